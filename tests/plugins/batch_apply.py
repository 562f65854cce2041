"""A sixth operation, defined here alone: ``batch-apply``.

The server imports this module when ``EPE_PLUGINS`` names it
(docs/architecture.md#adding-an-operation); nothing in ``src/`` knows of it. It
reuses row-apply's input (chunks of ``rows`` rows of a query) but keeps each
chunk's value apart, in a list, where row-apply concatenates DataFrames; its body
carries one field of its own, which the server must accept and ignore.
"""

from __future__ import annotations

from pydantic import Field, StrictStr

from epe.core.operations import CHUNKS, Operation, register
from epe.core.requests import RowApplyRequest


class BatchApplyRequest(RowApplyRequest):
    label: StrictStr | None = Field(None, min_length=1)


BATCH_APPLY = Operation("batch_apply", BatchApplyRequest,
                        "Run a function on chunks of `rows` rows of the input; a list of "
                        "its values, one per chunk.", input=CHUNKS, shape="list")

register(BATCH_APPLY)
