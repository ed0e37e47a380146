"""The exact-duplicate key: one definition, so dedup and the fine-tune split agree on what a copy is."""

import hashlib
import re

_SPACE = re.compile(r"\s+")


def exact_key(text: str) -> str:
    """sha1 of the case-folded text with whitespace runs collapsed: copies differing only in those share it."""
    return hashlib.sha1(_SPACE.sub(" ", text.casefold()).strip().encode()).hexdigest()
