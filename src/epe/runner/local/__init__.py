"""The local executor: a warm pool of worker processes on this machine
(``pool``), fed their input through memory-mapped Arrow files (``exchange``)."""
