"""The worker process: the only place user code runs.

``main`` is the process (limits, streams, the task loop), ``invoke`` calls the
user's function over a batch of units, ``inputs`` resolves a task's input
reference to Arrow, ``graphics`` captures figures, ``channel`` carries calls
back to the server, ``heap`` gives freed memory back, and ``userlib`` is what
``import oml`` finds inside a function. Started as ``python -m epe.runner.worker``.
"""
