from epe.runner.worker.main import main

main()
