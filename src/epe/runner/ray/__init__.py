"""Users' code on a Ray cluster (``EPE_EXECUTOR=ray``): ``host`` in the server,
``bridge`` as its Ray driver in a child process, ``agent`` on every node. Ray itself
is imported only by the bridge and the agents (docs/scale-out.md)."""
