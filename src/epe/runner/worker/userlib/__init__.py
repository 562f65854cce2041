"""Modules that user functions import inside workers.

The worker puts this folder on ``sys.path``, so ``import oml`` works in a
function run by epe and nowhere else.
"""
