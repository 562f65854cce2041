"""What operators see: Prometheus metrics and structured logs (docs/operations.md).

Low in the layers so that every part that does work (the services, the executor)
can record into it; it imports nothing of epe.
"""
