"""Changes (Kaizen tickets): creating, the transition table, editing and the scorecard."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from healing.changes import lifecycle as changes
from healing.changes.lifecycle import (
    TRANSITIONS,
    ChangeError,
    ChangeTransitionConflict,
    ChangeTransitionError,
    PatchSpec,
    change_record_scorecard,
    change_transition,
    change_update,
)
from healing.models import AuditEntry, Change, PatchState, PromotionLogEntry
from tests.factories import IssueFactory
from tests.healing.changes.support import DIFF, S, at_status, new_change

pytestmark = pytest.mark.django_db


# --- Creating ---------------------------------------------------------------------------------


def test_ids_are_sequential():
    keys = [new_change(title=f"Change {n}").key for n in range(3)]
    assert keys == ["KAIZ-001", "KAIZ-002", "KAIZ-003"]
    assert changes.change_get(key="kaiz-2").title == "Change 1"
    assert changes.change_get(key="KAIZ-003").number == 3
    with pytest.raises(changes.ChangeNotFound):
        changes.change_get(key="KAIZ-999")


def test_a_new_change_is_a_logged_and_audited_draft(component):
    issue = IssueFactory()
    change = new_change(
        component=component,
        issue=issue,
        plan=[{"action": "restart_worker", "params": {"queue": "P2"}}, {"action": "clear_cache"}],
        patch=PatchSpec(summary="Longer timeout", diff=DIFF),
        why="Fixes the timeouts",
    )
    change.refresh_from_db()
    assert change.status == S.DRAFT
    assert change.owner == "bob" and change.rollback_plan == "Flag off."  # the component's defaults
    assert change.plan == [
        {"action": "restart_worker", "params": {"queue": "P2"}},
        {"action": "clear_cache", "params": {}},
    ]
    assert issue.changes.get() == change  # a fix for an issue is a Change linked to it
    entry = change.promotions.get()
    assert (entry.actor, entry.from_status, entry.to_status, entry.why) == ("alice", "", S.DRAFT, "Fixes the timeouts")
    audit = AuditEntry.objects.get(action="change.create")
    assert (audit.actor, audit.target) == ("alice", "change:KAIZ-001")
    assert audit.detail["component"] == "checkout" and audit.detail["issue"] == str(issue.pk)


@pytest.mark.parametrize(
    ("word", "severity"), [("critical", "P0"), ("High", "P1"), ("medium", "P2"), ("low", "P3"), ("p1", "P1")]
)
def test_severity_words_map_to_p_levels(word, severity):
    assert new_change(severity=word).severity == severity


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"plan": [{"params": {}}]}, "plan"),
        ({"plan": [{"action": "x", "extra": 1}]}, "plan"),
        ({"plan": {"action": "x"}}, "plan"),
        ({"flag_key": "no spaces"}, "flag_key"),
        ({"title": "   "}, "title"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(kwargs, field):
    with pytest.raises(ValidationError) as caught:
        new_change(**kwargs)
    assert field in caught.value.message_dict
    assert not Change.objects.exists() and not PromotionLogEntry.objects.exists()


def test_unknown_severity_is_refused():
    with pytest.raises(ChangeError, match="Unknown severity"):
        new_change(severity="urgent")


@pytest.mark.django_db(transaction=True)
def test_concurrent_creators_get_distinct_sequential_numbers():
    barrier = threading.Barrier(4)
    errors = []

    def create(n: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                new_change(title=f"thread {n} change {i}")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(Change.objects.values_list("number", flat=True)) == list(range(1, 21))


# --- Transitions ------------------------------------------------------------------------------

PAIRS = [(source, to) for source in S.values for to in S.values]
LEGAL = [pair for pair in PAIRS if pair[1] in TRANSITIONS[pair[0]]]
ILLEGAL = [pair for pair in PAIRS if pair[1] not in TRANSITIONS[pair[0]]]


def test_the_table_is_the_documented_lifecycle():
    assert set(LEGAL) == {
        (S.DRAFT, S.PLANNED), (S.PLANNED, S.IN_PROGRESS), (S.IN_PROGRESS, S.IN_REVIEW), (S.IN_REVIEW, S.CANARY),
        (S.CANARY, S.COMPLETE), (S.IN_REVIEW, S.IN_PROGRESS),
        *((source, S.ABORTED) for source in (S.DRAFT, S.PLANNED, S.IN_PROGRESS, S.IN_REVIEW, S.CANARY)),
    }  # fmt: skip


@pytest.mark.parametrize(("source", "to"), LEGAL)
def test_legal_transition_applies_once_with_its_log_and_audit(source, to):
    change = at_status(source)
    change_transition(change=change, to=to, actor="carol", why="looks good")
    assert change.status == to
    assert Change.objects.get(pk=change.pk).status == to
    entry = change.promotions.order_by("-id").first()
    assert (entry.actor, entry.from_status, entry.to_status, entry.why) == ("carol", source, to, "looks good")
    audit = AuditEntry.objects.get(action="change.transition")
    assert audit.actor == "carol" and audit.target == f"change:{change.key}"
    assert audit.detail == {"from": source, "to": to, "why": "looks good", "promotion": entry.pk}


@pytest.mark.parametrize(("source", "to"), ILLEGAL)
def test_illegal_transition_is_refused_naming_from_to_and_the_allowed_moves(source, to):
    change = at_status(source)
    with pytest.raises(ChangeTransitionError) as caught:
        change_transition(change=change, to=to, actor="carol", why="")
    error = caught.value
    assert (error.from_status, error.to_status, error.allowed) == (source, to, TRANSITIONS[source])
    message = str(error)
    assert f"{source} → {to} is not allowed" in message
    assert all(move in message for move in TRANSITIONS[source])
    if not TRANSITIONS[source]:
        assert f"{source} is final" in message
    assert Change.objects.get(pk=change.pk).status == source
    assert change.promotions.count() == 1 and not AuditEntry.objects.filter(action="change.transition").exists()


def test_an_unknown_status_is_refused():
    change = new_change()
    with pytest.raises(ChangeTransitionError, match="no such status"):
        change_transition(change=change, to="shipped", actor="carol", why="")


def test_a_duplicate_transition_applies_once():
    change = at_status(S.PLANNED)
    first, second = Change.objects.get(pk=change.pk), Change.objects.get(pk=change.pk)  # two readers, both "planned"
    change_transition(change=first, to=S.IN_PROGRESS, actor="worker-1", why="")
    with pytest.raises(ChangeTransitionConflict, match="moved to in_progress since") as caught:
        change_transition(change=second, to=S.IN_PROGRESS, actor="worker-2", why="")
    assert caught.value.from_status == S.PLANNED
    moves = list(change.promotions.values_list("actor", "to_status"))
    assert moves == [("alice", S.DRAFT), ("worker-1", S.IN_PROGRESS)]
    assert AuditEntry.objects.filter(action="change.transition").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_transitions_one_wins():
    change = at_status(S.IN_REVIEW)
    barrier = threading.Barrier(2)
    outcomes = []

    def move(to: str) -> None:
        mine = Change.objects.get(pk=change.pk)
        barrier.wait()
        try:
            change_transition(change=mine, to=to, actor=f"racer-{to}", why="")
            outcomes.append(("moved", to))
        except ChangeTransitionConflict:
            outcomes.append(("conflict", to))
        finally:
            connection.close()

    threads = [threading.Thread(target=move, args=(to,)) for to in (S.CANARY, S.ABORTED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(kind for kind, _ in outcomes) == ["conflict", "moved"]
    winner = next(to for kind, to in outcomes if kind == "moved")
    assert Change.objects.get(pk=change.pk).status == winner
    assert change.promotions.exclude(to_status=S.DRAFT).count() == 1


def test_the_promotion_log_is_append_only():
    change = new_change()
    change_transition(change=change, to=S.PLANNED, actor="carol", why="")
    entry = change.promotions.order_by("-id").first()
    entry.why = "rewritten"
    with pytest.raises(ValidationError, match="append-only"):
        entry.save()
    with pytest.raises(ValidationError, match="append-only"):
        entry.delete()
    assert PromotionLogEntry.objects.get(pk=entry.pk).why == ""


# --- Editing and the scorecard ----------------------------------------------------------------


def test_update_is_audited_and_frozen_once_in_review(component):
    change = new_change(patch=PatchSpec(summary="s", diff=DIFF))
    change = change_update(change=change, fields={"title": "Renamed", "component": component}, actor="carol")
    assert (change.title, change.component_id) == ("Renamed", "checkout")
    audit = AuditEntry.objects.get(action="change.update")
    assert audit.detail["before"] == {"title": "Raise the checkout timeout", "component": None}
    assert audit.detail["after"] == {"title": "Renamed", "component": "checkout"}

    Change.objects.filter(pk=change.pk).update(status=S.IN_REVIEW)
    with pytest.raises(ChangeError, match="patch_diff can change only while"):
        change_update(change=change, fields={"patch_diff": "other"}, actor="carol")
    change_update(change=change, fields={"owner": "dave"}, actor="carol")  # not the reviewed content

    Change.objects.filter(pk=change.pk).update(status=S.COMPLETE)
    with pytest.raises(ChangeError, match="finished change"):
        change_update(change=change, fields={"owner": "erin"}, actor="carol")
    with pytest.raises(ValidationError):
        change_update(change=change, fields={"status": S.DRAFT}, actor="carol")


def test_a_new_patch_clears_the_old_submission():
    change = at_status(S.IN_PROGRESS, patch=PatchSpec(summary="s", diff=DIFF))
    Change.objects.filter(pk=change.pk).update(patch_state=PatchState.FAILED, patch_error="boom")
    change = change_update(change=change, fields={"patch_diff": DIFF + "+more\n"}, actor="carol")
    assert (change.patch_state, change.patch_error) == (PatchState.NONE, "")


def test_scorecard_parts_merge():
    change = new_change()
    change_record_scorecard(change=change, actor="kaizen", verification={"passed": 10, "runs": 10})
    change_record_scorecard(change=change, actor="kaizen", metrics_before={"error_rate": 0.05})
    change_record_scorecard(change=change, actor="kaizen", metrics_after={"error_rate": 0.001})
    scorecard = Change.objects.get(pk=change.pk).scorecard
    assert scorecard["verification"] == {"passed": 10, "runs": 10}
    assert scorecard["metrics"] == {"before": {"error_rate": 0.05}, "after": {"error_rate": 0.001}}
    assert AuditEntry.objects.filter(action="change.scorecard").count() == 3


def test_digest_counts_open_tickets_by_status_and_severity():
    at_status(S.PLANNED, severity="P1")
    at_status(S.PLANNED, severity="P1")
    at_status(S.CANARY, severity="P3")
    at_status(S.COMPLETE)
    at_status(S.ABORTED)
    digest = changes.changes_digest()
    assert digest.total == 3
    assert digest.counts == {S.PLANNED: {"P1": 2}, S.CANARY: {"P3": 1}}
