"""Async jobs on Ray: Oracle's async group-apply, status and progress, a failing job,
a job past its time limit (its worker on a node killed)."""

from tests.acceptance.test_jobs import (  # noqa: F401  (fixtures and tests run here again)
    c,
    test_failing_job_answers_what_the_sync_call_would,
    test_oracle_async_group_apply_example_verbatim,
    test_running_job_status_progress_result_and_delete,
    test_timed_out_job,
)
