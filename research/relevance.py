"""The relevance filter: keywords the owner edits in the admin, applied before any LLM spend."""

import re
from collections.abc import Iterable

from .models import Keyword


def keyword_pattern(*, words: Iterable[str] | None = None) -> re.Pattern[str] | None:
    """One case-insensitive whole-word pattern for all keywords; None when there are none."""
    words = [w.strip() for w in (words if words is not None else Keyword.objects.values_list("word", flat=True))]
    words = sorted({w for w in words if w}, key=len, reverse=True)
    if not words:
        return None
    return re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)


def is_relevant(*, text: str, pattern: re.Pattern[str] | None) -> bool:
    # No keywords at all means no filter: the owner has not narrowed anything yet.
    return pattern is None or pattern.search(text) is not None
