from epe.runner.worker.zygote import main

main()
