"""Table-, row-, group- and index-apply on Ray: Oracle's examples, a model saved to a
datastore by one function and loaded by another (on whichever node), batches in parallel
over both nodes."""

from tests.acceptance.test_apply import (  # noqa: F401  (fixtures and tests run here again)
    a,
    api,
    oml,
    test_compute_random_mean_in_parallel,
    test_group_apply_several_columns_case_insensitive,
    test_group_count_per_species,
    test_linear_model_fitted_in_table_apply_and_scored_by_row_apply,
    test_oracle_table_apply_request_verbatim,
    test_row_apply_dataframes_are_concatenated_in_row_order,
    user_a,
)
