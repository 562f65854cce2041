"""Graphics on Ray: Oracle's red dots, a figure per group, an async job's images and log."""

from tests.acceptance.test_graphics import (  # noqa: F401  (fixtures and tests run here again)
    c,
    test_async_graphics_job_log_and_result,
    test_per_group_histogram_through_group_apply,
    test_random_red_dots_oracle_example_verbatim,
)
