"""do-eval on Ray: Oracle's request bodies, a failure with its traceback and printed
output, printing that never corrupts a result, concurrent calls."""

from tests.acceptance.test_do_eval import (  # noqa: F401  (fixtures and tests run here again)
    c,
    client,
    test_concurrent_calls_get_their_own_results,
    test_function_raising_is_400_with_traceback_and_stdout,
    test_oracle_request_bodies_verbatim,
    test_print_never_corrupts_the_result,
)
