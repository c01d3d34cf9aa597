"""Which channels an alert goes to, and when: the routing table, the owner's preferences, quiet hours.

Pure decisions: nothing here writes. `deliveries` turns the plan into Delivery rows and tasks.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings

from .models import Channel, DeliveryStatus, Hold, Preference, QuietHours, Severity


class Mode(StrEnum):
    NOW = "now"
    BATCH = "batch"  # one summary push per KAIZEN_NOTIFY_P2_BATCH_MINUTES
    DIGEST = "digest"  # the daily email


# P0 pages on every urgent channel at once; P1 pushes; P2 is batched; P3 waits for the morning digest.
ROUTES: dict[str, tuple[tuple[str, Mode], ...]] = {
    Severity.P0: ((Channel.PUSH, Mode.NOW), (Channel.SMS, Mode.NOW), (Channel.SLACK, Mode.NOW),
                  (Channel.DISCORD, Mode.NOW)),
    Severity.P1: ((Channel.PUSH, Mode.NOW), (Channel.SLACK, Mode.NOW), (Channel.DISCORD, Mode.NOW)),
    Severity.P2: ((Channel.PUSH, Mode.BATCH),),
    Severity.P3: ((Channel.EMAIL, Mode.DIGEST),),
}  # fmt: skip
# A P0 that cannot be pushed must still reach the owner: push, then SMS, then email.
FALLBACK_CHAIN: tuple[str, ...] = (Channel.PUSH, Channel.SMS, Channel.EMAIL)
MODE_HOLD = {Mode.BATCH: Hold.BATCH, Mode.DIGEST: Hold.DIGEST}

NOT_CONFIGURED = "not configured"
TURNED_OFF = "turned off in the owner's preferences"


def severity_rank(severity: str) -> int:
    """0 for P0 (most severe) … 3 for P3."""
    return int(severity[1])


@dataclass(frozen=True)
class Planned:
    channel: str
    status: str
    hold: str = Hold.NONE
    error: str = ""


def owner_zone() -> ZoneInfo:
    return ZoneInfo(settings.KAIZEN_OWNER_TIMEZONE)


def quiet_hours_settings() -> QuietHours:
    return QuietHours.objects.order_by("pk").first() or QuietHours()


def quiet_now(*, quiet: QuietHours, now: datetime) -> bool:
    """Whether `now` falls in the owner's quiet hours, read on the owner's wall clock, so a DST change
    moves them with the owner rather than by an hour."""
    if not quiet.enabled or quiet.start == quiet.end:
        return False
    local: time = now.astimezone(owner_zone()).time()
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # overnight: 22:00 → 07:00


def preferences_off(*, kind: str) -> set[str]:
    return set(Preference.objects.filter(kind=kind, enabled=False).values_list("channel", flat=True))


def route_plan(
    *,
    kind: str,
    severity: str,
    configured: set[str],
    off: set[str],
    quiet: QuietHours,
    now: datetime,
    admit: Callable[[str], bool] = lambda channel: True,
) -> list[Planned]:
    """One Planned per channel the routing table names for `severity`. `admit(channel)` is asked
    only for a send about to go out, and says whether an alert storm leaves room for it."""
    in_quiet = quiet_now(quiet=quiet, now=now)
    breaks_through = severity == Severity.P0 and quiet.p0_breaks_through
    plan = []
    for channel, mode in ROUTES[severity]:
        if channel in off:
            plan.append(Planned(channel, DeliveryStatus.SUPPRESSED, error=TURNED_OFF))
        elif channel not in configured:
            plan.append(Planned(channel, DeliveryStatus.SUPPRESSED, error=NOT_CONFIGURED))
        elif mode is not Mode.NOW:
            plan.append(Planned(channel, DeliveryStatus.HELD, hold=MODE_HOLD[mode]))
        elif in_quiet and not breaks_through:
            plan.append(Planned(channel, DeliveryStatus.HELD, hold=Hold.QUIET))
        elif not admit(channel):
            plan.append(Planned(channel, DeliveryStatus.HELD, hold=Hold.STORM))
        else:
            plan.append(Planned(channel, DeliveryStatus.QUEUED))
    return plan


def fallback_plan(*, channel: str, configured: set[str], admit: Callable[[str], bool]) -> Planned:
    """The P0 fallback's send on `channel`: skipped when not configured (the chain goes on), held
    when an alert storm leaves no room for it, else queued."""
    if channel not in configured:
        return Planned(channel, DeliveryStatus.SUPPRESSED, error=NOT_CONFIGURED)
    if not admit(channel):
        return Planned(channel, DeliveryStatus.HELD, hold=Hold.STORM)
    return Planned(channel, DeliveryStatus.QUEUED)


def fallback_next(*, failed_channel: str, existing: dict[str, str]) -> str | None:
    """The next channel of the P0 fallback chain to try after `failed_channel` failed, given the
    status of this notification's other deliveries by channel; None when one of them is still live
    (its own failure continues the chain) or the chain is exhausted."""
    if failed_channel not in FALLBACK_CHAIN:
        return None
    for channel in FALLBACK_CHAIN[FALLBACK_CHAIN.index(failed_channel) + 1 :]:
        status = existing.get(channel)
        if status in (DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.HELD):
            return None
        if status is None:
            return channel
    return None


def notify_queue(*, severity: str) -> str:
    """A P0's alerts go to the P0 workers, P1's to the urgent workers, minor alerts to the routine
    workers': each behind nothing less urgent than itself."""
    if severity == Severity.P0:
        return settings.KAIZEN_NOTIFY_PAGE_QUEUE
    if severity == Severity.P1:
        return settings.KAIZEN_NOTIFY_URGENT_QUEUE
    return settings.KAIZEN_NOTIFY_ROUTINE_QUEUE
