"""Remediation by dropping cached values (a stale balance, a poisoned per-user entry).

Only keys under the prefixes in the `KAIZEN_REMEDIATION_CACHE_PREFIXES` setting can be cleared
(none by default): Kaizen's own cache also holds state that must not vanish — rate-limit windows,
the demo's accounts — and a plan must not be able to wipe it.
"""

from django.conf import settings
from django.core.cache import cache
from pydantic import Field, field_validator

from healing.models import RiskLevel
from healing.remediation.base import Action, Outcome, Params, RemediationContext, register

MAX_KEYS = 100


def clearable_prefixes() -> tuple[str, ...]:
    return tuple(settings.KAIZEN_REMEDIATION_CACHE_PREFIXES)


class CacheParams(Params):
    keys: list[str] = Field(min_length=1, max_length=MAX_KEYS)

    @field_validator("keys")
    @classmethod
    def _allowed(cls, keys: list[str]) -> list[str]:
        prefixes = clearable_prefixes()
        refused = [key for key in keys if not (key and key.startswith(prefixes))]
        if refused:
            allowed = ", ".join(prefixes) if prefixes else "none are configured"
            raise ValueError(f"not under an allowed prefix ({allowed}): {', '.join(refused[:5])}")
        return keys


@register
class CacheClear(Action):
    name = "cache_clear"
    risk = RiskLevel.LOW
    summary = "Delete cache keys (only under the allowed prefixes)."
    Params = CacheParams
    # Putting the entries back would restore the very values the fix removed.
    no_undo = "a cleared cache refills itself"

    def run(self, params: CacheParams, context: RemediationContext) -> Outcome:
        found = cache.get_many(params.keys)
        cache.delete_many(params.keys)
        return Outcome(
            ok=True,
            detail=f"Cleared {len(found)} of {len(params.keys)} keys (the others were not cached).",
            result={"cleared": sorted(found), "absent": sorted(set(params.keys) - set(found))},
        )
