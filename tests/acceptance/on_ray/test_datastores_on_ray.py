"""Datastores inside functions on Ray: the call channel from a node to the server
(oml.ds.save, load, grants) in Oracle's lab, and parallel appends that lose nothing."""

from tests.acceptance.test_datastores import (  # noqa: F401  (fixtures and tests run here again)
    alice,
    bob,
    carol,
    names,
    test_forty_parallel_appends_lose_nothing,
    test_grant_to_public_and_revoke_inside_functions,
    test_load_to_globals_sets_the_functions_globals,
    test_oracle_lab_build_score_and_per_species_models,
    users,
)
