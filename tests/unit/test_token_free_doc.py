"""The docs say what answers without a token exactly as the code's one list does
(``epe.api.deps.TOKEN_FREE``, which the OpenAPI document reads too)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from epe.api.deps import TOKEN_FREE

ROOT = Path(__file__).resolve().parents[2]
# The paragraph that lists them starts so, in each document that lists them.
OPENING = "Without a token, only these answer:"


def listed(doc: Path) -> set[str]:
    text = doc.read_text()
    start = text.index(OPENING)
    paragraph = text[start:text.find("\n\n", start)]
    return set(re.findall(r"`(?:[A-Z]+ )?(/[^`]*)`", paragraph))


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_the_docs_list_exactly_the_token_free_paths(doc: str) -> None:
    assert listed(ROOT / doc) == set(TOKEN_FREE)


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md", "docs/architecture.md",
                                 "docs/security.md"])
def test_no_other_sentence_says_what_answers_without_a_token(doc: str) -> None:
    text = (ROOT / doc).read_text()
    others = re.findall(r"[^.]*(?:everything but|[Oo]nly `/health` answers|every endpoint but)"
                        r"[^.]*", text)
    assert others == [], others
