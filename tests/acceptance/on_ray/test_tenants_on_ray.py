"""Tenants on Ray: each user's workers on the nodes are their own, in the same sandbox
as on the server's machine (the nodes' Ray runs as root here): health says so, a patched
library never sees another user's rows, another run's input cannot be found while it
runs, and other processes can be neither seen nor signalled."""

from tests.acceptance.test_tenants import (  # noqa: F401  (fixtures and tests run here again)
    test_a_patched_library_never_sees_another_users_rows,
    test_another_runs_input_cannot_be_read_while_it_runs,
    test_health_says_whether_tenants_are_isolated,
    test_other_processes_can_be_neither_seen_nor_signalled,
    users,
)
