"""The one before → after of an edit, as the audit log, a flag's history and the console record it."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

_MISSING = object()


def fields_read(obj: Any, names: Iterable[str], *, as_value: Callable[[Any], Any] = lambda v: v) -> dict[str, Any]:
    """The named attributes of `obj`, each passed through `as_value` (e.g. a row to its id)."""
    return {name: as_value(getattr(obj, name)) for name in names}


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{"before": …, "after": …}` holding only the names whose value differs (a name missing
    from `before` is new, and listed in `after` alone); both empty when nothing changed."""
    changed = [name for name in after if before.get(name, _MISSING) != after[name]]
    return {
        "before": {name: before[name] for name in changed if name in before},
        "after": {name: after[name] for name in changed},
    }
