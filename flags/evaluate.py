"""Evaluating flags: sticky percentage bucketing over an in-process snapshot.

An evaluation is a dict look-up and at most one MurmurHash — no query, no network call. Each
process keeps a snapshot (project → flag key → compiled flag with its overrides), loaded lazily
per project and thrown away when the flags change:

- Every change bumps the project's SnapshotVersion row in its transaction and, after commit,
  `INCR`s one Redis key. A reader compares that key at most every REDIS_POLL_SECONDS on its
  next evaluation. We poll rather than subscribe: a pub/sub listener needs a thread per process,
  threads do not survive fork (Celery prefork, gunicorn --preload), and a message published
  while the listener reconnects is lost without a trace — a version key cannot be missed, and
  one GET every 250 ms per process costs nothing.
- Without Redis (the embedded default) the reader polls the sum of the SnapshotVersion rows,
  at most once a second. Each commit adds one to some row, so the sum moves on every change.
- A snapshot older than MAX_AGE_SECONDS is reloaded anyway: the bound on staleness if the
  process that committed a change died before its INCR.

`flag_enabled`, the call application code makes on every request, reads no clock: reading one
cost more than the rest of the evaluation. It answers from each process's `fast` map (project →
flag key → the constant answer, or the flag to hash), which a ticker thread empties every
TICK_SECONDS; the next evaluation after a tick goes through project_snapshot(), which polls and
ages as above. The ticker holds no connection and does no I/O. A forked child starts its own
at its first evaluation (Python's at-fork hook empties its map); a process forked below Python,
without that hook, would have no ticker and keep its parent's answers.
"""

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import mmh3
import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Sum

from flags.models import Flag, Override, SnapshotVersion
from kaizen_site import redis_client

logger = logging.getLogger("kaizen.flags")

VERSION_KEY = "kaizen:flags:version"
REDIS_POLL_SECONDS = 0.25
DB_POLL_SECONDS = 1.0
MAX_AGE_SECONDS = 60.0
TICK_SECONDS = REDIS_POLL_SECONDS
WARN_EVERY_SECONDS = 60.0

# Indirections the tests move: monotonic for polling and ages, wall clock for override expiry.
_clock = time.monotonic
_wallclock = time.time
_hash = mmh3.hash


def propagation_seconds() -> float:
    """The longest a committed flag change takes to reach every process's evaluations: each polls
    the version at most every REDIS_POLL_SECONDS (DB_POLL_SECONDS without Redis), on its first
    evaluation after the ticker's beat."""
    return (REDIS_POLL_SECONDS if settings.REDIS_URL else DB_POLL_SECONDS) + TICK_SECONDS


def bucket(*, group_id: str, user_id: str) -> int:
    """The user's bucket, 1–100, for a flag's group: stable for the pair, independent between groups.

    Unleash's normalizedValue (unsigned MurmurHash3 x86 32-bit, seed 0, of "groupId:userId",
    mod 100, plus 1 — https://github.com/Unleash/unleash-client-node/blob/main/src/strategy/util.ts),
    so a rollout here puts the same users in as an Unleash client would. The hash is over the
    UTF-8 bytes, as the Java, Go and Rust clients do.
    """
    return mmh3.hash(f"{group_id}:{user_id}", 0, signed=False) % 100 + 1


@dataclass(frozen=True, slots=True)
class Evaluation:
    enabled: bool
    reason: str  # killed | override | disabled | rollout | probe


# Shared results: the hot path allocates nothing.
_KILLED = Evaluation(False, "killed")
_OVERRIDE_ON = Evaluation(True, "override")
_OVERRIDE_OFF = Evaluation(False, "override")
_DISABLED = Evaluation(False, "disabled")
_IN = Evaluation(True, "rollout")
_OUT = Evaluation(False, "rollout")
_PROBE = Evaluation(True, "probe")


@dataclass(frozen=True, slots=True)
class CompiledFlag:
    key: str
    killed: bool
    enabled: bool
    percentage: int
    prefix: str  # "<group id>:", the bucketing input's head
    overrides: Mapping[str, tuple[bool, float | None]]  # user id → (on, expires at as epoch seconds)
    # The answer for every user when no user can get another (killed; or no overrides and off, at
    # 0 % or at 100 %), else None: such flags are answered without hashing.
    constant: bool | None = field(init=False, default=None)
    # Buckets below this get the flag (0–99 against 1–100 in `bucket`): the percentage when the
    # flag is on, else 0, so the hot path reads one field instead of two.
    cutoff: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.killed:
            constant = False
        elif self.overrides:
            constant = None
        elif not self.enabled or self.percentage <= 0:
            constant = False
        elif self.percentage >= 100:
            constant = True
        else:
            constant = None
        object.__setattr__(self, "constant", constant)
        object.__setattr__(self, "cutoff", self.percentage if self.enabled and not self.killed else 0)

    def evaluate(self, user_id: str) -> Evaluation:
        # Precedence: kill switch → the user's unexpired override → disabled → percentage.
        if self.killed:
            return _KILLED
        if self.overrides:
            override = self.overrides.get(user_id)
            if override is not None and (override[1] is None or override[1] > _wallclock()):
                return _OVERRIDE_ON if override[0] else _OVERRIDE_OFF
        if not self.enabled:
            return _DISABLED
        percentage = self.percentage
        if percentage > 0 and mmh3.hash(self.prefix + user_id, 0, False) % 100 + 1 <= percentage:
            return _IN
        return _OUT


@dataclass(frozen=True, slots=True)
class ProjectSnapshot:
    project_id: int
    version: int
    flags: Mapping[str, CompiledFlag]
    expiries: Mapping[str, tuple[float, ...]]  # user id → expiry of each of their overrides (for ETags)
    loaded_at: float
    # What flag_enabled reads: the constant answer where there is one, else the flag to hash.
    answers: Mapping[str, bool | CompiledFlag] = field(init=False)

    def __post_init__(self) -> None:
        answers = {key: flag if flag.constant is None else flag.constant for key, flag in self.flags.items()}
        object.__setattr__(self, "answers", answers)


class UnknownFlag(LookupError):
    def __init__(self, keys: Iterable[str]):
        self.keys = sorted(set(keys))
        super().__init__(", ".join(self.keys))


class _State:
    __slots__ = ("pid", "projects", "remote_version", "next_poll")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.projects: dict[int, ProjectSnapshot] = {}
        self.remote_version: str | None = None
        self.next_poll = 0.0


_state = _State()
# project id → its snapshot's answers, for flag_enabled. One dict for the life of the process
# (emptied, never replaced), so the hot path reads it without going through _state.
_fast: dict[int, Mapping[str, bool | CompiledFlag]] = {}
# One thread per process loads a snapshot; the others wait for it. Without this, the threads a
# web worker starts at once after a change would each run the same queries, each on a database
# connection of its own that it then keeps.
_load_lock = threading.Lock()
# (thread id, project id) pairs whose flag changes this thread has written but not yet committed.
# Such a project is read fresh and not cached: its snapshot could hold rows a rollback undoes.
_uncommitted: dict[tuple[int, int], None] = {}
_last_warning = [-WARN_EVERY_SECONDS]
_ticker_pid = [0]  # the process whose ticker runs


def snapshot_forget() -> None:
    """Drop everything this process knows; the next evaluation loads afresh."""
    global _state
    _state = _State()
    _fast.clear()
    _uncommitted.clear()


def _after_fork_in_child() -> None:
    global _load_lock
    snapshot_forget()
    _load_lock = threading.Lock()  # a parent thread may have held it at the fork: it is never released here


# A forked child (Celery prefork, a web server's workers) starts with nothing of its parent's: no
# snapshot whose poll clock the parent owned, no pending-commit marks from the parent's threads.
os.register_at_fork(after_in_child=_after_fork_in_child)


def snapshot_changed(*, project_id: int) -> None:
    """Called by the services inside the transaction that changed a project's flags."""
    mark = (threading.get_ident(), project_id)
    _uncommitted[mark] = None

    def committed() -> None:
        _uncommitted.pop(mark, None)
        _state.projects.pop(project_id, None)
        _fast.pop(project_id, None)
        _publish()

    transaction.on_commit(committed)


def _publish() -> None:
    if not settings.REDIS_URL:
        return  # readers poll the database version
    try:
        redis_client.get().client.incr(VERSION_KEY)
    except redis.RedisError as exc:
        logger.warning("flag change not announced; other processes see it within %.0f s: %s", MAX_AGE_SECONDS, exc)


def _warn(message: str, *args) -> None:
    now = _clock()
    if now - _last_warning[0] >= WARN_EVERY_SECONDS:  # at most once a minute: this runs on every poll
        _last_warning[0] = now
        logger.warning(message, *args)


def _remote_version() -> tuple[str, float]:
    """The version to compare and how long to trust it. The source is part of the value, so
    switching between Redis and the database (Redis down, then back) forces one reload."""
    if settings.REDIS_URL:
        try:
            raw = redis_client.get().client.get(VERSION_KEY)
            return f"r{int(raw or 0)}", REDIS_POLL_SECONDS
        except redis.RedisError as exc:
            _warn("flag version unreadable from Redis, polling the database instead: %s", exc)
    total = SnapshotVersion.objects.aggregate(total=Sum("version"))["total"] or 0
    return f"d{total}", DB_POLL_SECONDS


def _poll(state: _State, now: float) -> _State:
    if state.pid != os.getpid():  # a fork that bypassed Python's at-fork hooks
        snapshot_forget()
        state = _state
    try:
        remote, interval = _remote_version()
    except DatabaseError as exc:
        # Serve what we have rather than fail every evaluation; ask again after a second.
        _warn("flag version unreadable, serving the current snapshot: %s", exc)
        state.next_poll = now + DB_POLL_SECONDS
        return state
    state.next_poll = now + interval
    if remote != state.remote_version:
        state.projects = {}
        _fast.clear()
        state.remote_version = remote
    return state


def _version_of(project_id: int) -> int:
    return SnapshotVersion.objects.filter(project_id=project_id).values_list("version", flat=True).first() or 0


def _load(project_id: int, now: float) -> ProjectSnapshot:
    # Version, rows, version again: if a change committed in between, read again, so the
    # version names the rows it is served with (five tries; only a storm of changes runs out,
    # and the next poll reloads anyway).
    for _ in range(5):
        version = _version_of(project_id)
        flags = list(
            Flag.objects.filter(project_id=project_id).values_list(
                "id", "key", "killed", "enabled", "rollout_percentage", "group_id"
            )
        )
        overrides = list(
            Override.objects.filter(flag__project_id=project_id).values_list(
                "flag_id", "user_id", "enabled", "expires_at"
            )
        )
        if _version_of(project_id) == version:
            break
    by_flag: dict[int, dict[str, tuple[bool, float | None]]] = {}
    expiries: dict[str, list[float]] = {}
    for flag_id, user_id, enabled, expires_at in overrides:
        expires = expires_at.timestamp() if expires_at is not None else None
        by_flag.setdefault(flag_id, {})[user_id] = (enabled, expires)
        if expires is not None:
            expiries.setdefault(user_id, []).append(expires)
    compiled = {
        key: CompiledFlag(
            key=key,
            killed=killed,
            enabled=enabled,
            percentage=percentage,
            prefix=f"{group_id or key}:",
            overrides=by_flag.get(flag_id, {}),
        )
        for flag_id, key, killed, enabled, percentage, group_id in flags
    }
    return ProjectSnapshot(
        project_id=project_id,
        version=version,
        flags=compiled,
        expiries={user: tuple(sorted(times)) for user, times in expiries.items()},
        loaded_at=now,
    )


def project_snapshot(*, project_id: int) -> ProjectSnapshot:
    state = _state
    now = _clock()
    if now >= state.next_poll:
        state = _poll(state, now)
    if _uncommitted and (threading.get_ident(), project_id) in _uncommitted:
        if transaction.get_connection().in_atomic_block:
            return _load(project_id, now)
        _uncommitted.pop((threading.get_ident(), project_id), None)  # rolled back: nothing to keep
        state.projects.pop(project_id, None)
        _fast.pop(project_id, None)
    snapshot = state.projects.get(project_id)
    if snapshot is None or now - snapshot.loaded_at > MAX_AGE_SECONDS:
        with _load_lock:
            snapshot = state.projects.get(project_id)  # loaded meanwhile by the thread we waited for
            if snapshot is None or now - snapshot.loaded_at > MAX_AGE_SECONDS:
                try:
                    snapshot = _load(project_id, now)
                except DatabaseError:
                    if snapshot is None:
                        raise
                    _warn("flags of project %s not reloadable, serving the previous snapshot", project_id)
                    return snapshot
                state.projects[project_id] = snapshot
    return snapshot


def tick() -> None:
    """Send every project's next evaluation through project_snapshot(): the ticker's beat."""
    _fast.clear()


def _tick_forever() -> None:
    while True:
        time.sleep(TICK_SECONDS)
        tick()


def _answers(project_id: int) -> Mapping[str, bool | CompiledFlag]:
    """flag_enabled's slow path: the project's answers from project_snapshot(), kept for the fast
    path unless they were read for this thread's own uncommitted change."""
    if _ticker_pid[0] != os.getpid():
        _ticker_pid[0] = os.getpid()
        threading.Thread(target=_tick_forever, name="kaizen-flags-ticker", daemon=True).start()
    snapshot = project_snapshot(project_id=project_id)
    state = _state  # project_snapshot() may have started a new one (a fork seen by its pid)
    if state.projects.get(project_id) is snapshot:
        _fast[project_id] = snapshot.answers
    return snapshot.answers


def flag_enabled(*, project_id: int, key: str, user_id: str, default: bool = False) -> bool:
    """The in-process check application code calls. An unknown key answers `default`, as
    feature-flag clients do, so a typo or a not-yet-created flag never breaks a request.
    Same rules and precedence as CompiledFlag.evaluate, without building the reason: this costs
    little more than the hash (bench/flags.py)."""
    try:
        if _uncommitted:
            raise KeyError(key)  # maybe this thread's own uncommitted change: the slow path decides
        flag = _fast[project_id][key]  # subscripts, not get(): no method call on the hot path
    except KeyError:
        flag = _answers(project_id).get(key)
        if flag is None:  # an unknown key
            return default
    if flag is True or flag is False:
        return flag
    overrides = flag.overrides
    if overrides and user_id in overrides:  # `in`, not get(): most users hold no override
        on, expires = overrides[user_id]
        if expires is None or expires > _wallclock():
            return on
    return _hash(flag.prefix + user_id, 0, False) % 100 < flag.cutoff


def flags_evaluate(
    *, snapshot: ProjectSnapshot, items: Iterable[tuple[str, str]], forced: Mapping[str, str] | None = None
) -> list[Evaluation]:
    """Evaluate (flag key, user id) pairs; unknown keys raise UnknownFlag (all of them named).
    `forced` maps a flag key to the one user a verified sandbox probe turned it on for."""
    flags = snapshot.flags
    pairs = list(items)
    unknown = [key for key, _ in pairs if key not in flags]
    if unknown:
        raise UnknownFlag(unknown)
    results = []
    for key, user_id in pairs:
        if forced and forced.get(key) == user_id:
            results.append(_PROBE)
        else:
            results.append(flags[key].evaluate(user_id))
    return results


def flags_for_user(
    *, snapshot: ProjectSnapshot, user_id: str, forced: Mapping[str, str] | None = None
) -> dict[str, bool]:
    result = {key: flag.evaluate(user_id).enabled for key, flag in snapshot.flags.items()}
    for key, forced_user in (forced or {}).items():
        if key in result and forced_user == user_id:
            result[key] = True
    return result


def user_etag(*, snapshot: ProjectSnapshot, user_id: str) -> str:
    """Names one user's answer: the project's version, the user, and how many of the user's
    overrides have expired by now — expiry changes the answer without any write, and counting
    passed expiries gives every process the same tag for the same answer."""
    expired = 0
    times = snapshot.expiries.get(user_id)
    if times:
        now = _wallclock()
        expired = sum(1 for t in times if t <= now)
    digest = hashlib.blake2b(f"{snapshot.project_id}\x00{user_id}\x00{expired}".encode(), digest_size=8).hexdigest()
    return f'"{snapshot.version}-{digest}"'
