"""Where user code runs, never in the server: the ``Executor`` interface and the frame
protocol (``executor``, ``protocol``), the pools of each user in each environment
(``pools``, ``environments``), the two backends, this machine's fork servers and
sandboxes (``local``) and a Ray cluster's nodes (``ray``), and the worker process
itself (``worker``). docs/architecture.md#where-a-second-backend-plugs-in says how
another backend fits."""
