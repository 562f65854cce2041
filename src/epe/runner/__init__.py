"""Where user code runs: the executor interface and its local worker pool."""
