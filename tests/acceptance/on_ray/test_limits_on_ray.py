"""Resource limits on Ray: each user's workers on a node are in that user's cgroup there,
health says how the nodes limit them, and a worker past its user's memory on its node
is killed with the same 400 while another user's run finishes (usage counted on the
nodes: ``tests/integration/test_executor_conformance.py``, which runs on Ray too)."""

from __future__ import annotations

from tests.acceptance.test_resource_limits import (  # noqa: F401  (tests run here again)
    test_a_worker_past_its_users_memory_is_killed_and_another_users_run_finishes,
    test_health_and_the_log_say_how_workers_are_limited,
)
