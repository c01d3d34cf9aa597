"""The competitor monitor: which changelog entries are new since the last snapshot (content hash
+ diff), which features they announce, and which of those the owner's product lacks."""

import difflib
import re

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Capability, CompetitorFeature, Source
from .similarity import containment, jaccard
from .sources import Item

# On the first snapshot of a changelog only its latest entries are news; the rest is history.
FIRST_SNAPSHOT_NEW = 5
SNAPSHOT_KEEP = 500
MATCH_THRESHOLD = 0.6
ANNOUNCE = re.compile(
    r"^(?:[-*•]\s*)?(?:new[:!]?\s+|added?\s+|adds\s+|introducing\s+|now\s+(?:you\s+can\s+|supports?\s+)|"
    r"support(?:s)?\s+for\s+|launch(?:ed|ing)?\s+)",
    re.IGNORECASE,
)
FIX = re.compile(r"^(?:[-*•]\s*)?(?:fix(?:ed|es)?|bug|improved?\s+performance|internal)\b", re.IGNORECASE)


def features_extract(*, title: str, summary: str) -> list[str]:
    """The features an entry announces: its bullet lines that are not bug fixes, or its title."""
    lines = [line.strip(" -*•\t") for line in summary.split("\n") if line.strip()]
    found = []
    for line in lines:
        # Fixes are not features; a line ending in ":" introduces steps; a word alone is a heading.
        if FIX.match(line) or line.endswith(":") or len(line.split()) < 2:
            continue
        feature = ANNOUNCE.sub("", line).strip().rstrip(".")
        if feature and (ANNOUNCE.match(line) or len(lines) > 1):
            found.append(feature[:500])
    if not found and title and not FIX.match(title):
        found.append(ANNOUNCE.sub("", title).strip().rstrip(".")[:500])
    seen: set[str] = set()
    return [f for f in found if not (f.lower() in seen or seen.add(f.lower()))][:20]


def capability_match(*, feature: str, capabilities: list[Capability]) -> Capability | None:
    """The owner's capability this feature is, if any: its name or an alias mostly in the feature."""
    best, best_score = None, 0.0
    for capability in capabilities:
        for name in [capability.name, *capability.aliases.splitlines()]:
            if not name.strip():
                continue
            score = max(containment(name, feature), jaccard(name, feature))
            if score > best_score:
                best, best_score = capability, score
    return best if best_score >= MATCH_THRESHOLD else None


def snapshot_diff(*, before: list[str], after: list[str]) -> str:
    return "\n".join(difflib.unified_diff(before, after, "before", "after", lineterm="", n=0))


def changelog_update(*, source: Source, items: list[Item]) -> list[CompetitorFeature]:
    """Compare the fetched entries with the last snapshot, record features of new entries."""
    previous = source.snapshot or {}
    known = set(previous.get("hashes", []))
    hashes = [item.external_id for item in items]
    fresh = [item for item in items if item.external_id not in known]
    if not known:
        fresh = fresh[:FIRST_SNAPSHOT_NEW]
    capabilities = list(Capability.objects.all())
    recorded = []
    for item in fresh:
        for feature in features_extract(title=item.title, summary=item.summary):
            matched = capability_match(feature=feature, capabilities=capabilities)
            try:
                with transaction.atomic():
                    recorded.append(
                        CompetitorFeature.objects.create(
                            source=source, entry_title=item.title[:500], entry_url=item.url[:1000],
                            feature=feature, gap=matched is None, matched=matched,
                        )
                    )  # fmt: skip
            except IntegrityError:  # the same feature announced again
                continue
    titles = [item.title for item in items]
    source.snapshot = {
        "hashes": (hashes + [h for h in previous.get("hashes", []) if h not in set(hashes)])[:SNAPSHOT_KEEP],
        "titles": titles[:SNAPSHOT_KEEP],
        "diff": snapshot_diff(before=previous.get("titles", []), after=titles)[:20000],
        "taken_at": timezone.now().isoformat(),
        "new_entries": len(fresh),
    }
    Source.objects.filter(pk=source.pk).update(snapshot=source.snapshot)
    return recorded


def gaps_open(*, limit: int = 20) -> list[CompetitorFeature]:
    """Recent gaps not matched by a capability added since they were found."""
    capabilities = list(Capability.objects.all())
    found = CompetitorFeature.objects.filter(gap=True).select_related("source")[: limit * 3]
    return [f for f in found if capability_match(feature=f.feature, capabilities=capabilities) is None][:limit]
