"""The popup's words: friendly per stage and type, the user's name, and never an internal detail."""

import pytest

from healing import messages
from healing.models import IssueEvent, IssueType, MessageTemplate, Stage
from tests.factories import IssueFactory

LEAKS = [
    'Traceback (most recent call last):\n  File "/srv/app/views.py", line 42, in generate',
    "TypeError: Cannot read properties of undefined (reading 'id')",
    "at generateImage (app.js:120:15)",
    "SELECT * FROM credits WHERE user_id = 42",
    "the upstream returned HTTP 429 from api.upstream-images.com",
    "Connection refused by 10.0.3.17:5432",
    "db-primary.internal timed out",
    "key sk-live-4f9a8b7c6d5e4f3a2b1c was rejected",
    "AKIAIOSFODNN7EXAMPLE is not allowed",
    "token=abcd1234 expired",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig",
    "see /var/log/kaizen/worker.log for details",
    "C:\\app\\generate.py failed",
    "redis://127.0.0.1:6379/0 is down",
    "the <script>alert(1)</script> ran",
    "x" * 500,
]


@pytest.mark.parametrize("text", LEAKS)
def test_internal_details_are_never_safe(text):
    assert not messages.text_is_safe(text)


@pytest.mark.parametrize(
    "text",
    ["We found the cause: a busy upstream. Retrying now fixes it.", "Which button did you click last?", "All good!"],
)
def test_plain_friendly_text_is_safe(text):
    assert messages.text_is_safe(text)


@pytest.mark.parametrize("leak", LEAKS)
def test_a_leaking_diagnosis_message_falls_back_to_the_template(db, leak):
    shown = messages.stage_message(stage=Stage.ROOT_CAUSE_FOUND, issue_type=IssueType.ERROR, worded=leak)
    assert shown == messages.template_text(message_stage="ROOT_CAUSE_FOUND", issue_type=IssueType.ERROR)
    assert messages.text_is_safe(shown)
    assert messages.question_for(stage=Stage.NEEDS_INPUT, worded=leak) is None


def test_every_default_template_is_safe_and_jargon_free(db):
    for (stage, issue_type), _ in messages.DEFAULT_TEMPLATES.items():
        for name in ("", "Ada"):
            text = messages.template_text(message_stage=stage, issue_type=issue_type, name=name)
            assert messages.text_is_safe(text), (stage, issue_type, text)
            assert "{" not in text and "  " not in text and text.lstrip("*")[0].isupper()


def test_the_name_is_filled_in_or_dropped_with_its_comma(db):
    named = messages.stage_message(stage=Stage.DETECTED, issue_type="ERROR", name="Ada Lovelace")
    anonymous = messages.stage_message(stage=Stage.DETECTED, issue_type="ERROR")
    assert named == "Sorry, Ada, that didn't go through on our side. We've spotted it and are on it."
    assert anonymous == "Sorry, that didn't go through on our side. We've spotted it and are on it."
    # An email address, or anything unsafe, is never used as a name.
    assert "@" not in messages.stage_message(stage=Stage.DETECTED, issue_type="ERROR", name="ada@example.com")


def test_each_issue_type_has_its_own_detected_words_and_fixed_reads_fixed(db):
    detected = {messages.stage_message(stage=Stage.DETECTED, issue_type=t) for t in IssueType.values}
    assert len(detected) == len(IssueType.values)
    for stage in (Stage.DEPLOYED, Stage.MITIGATED, Stage.RESOLVED):
        assert messages.stage_message(stage=stage, issue_type="ERROR").startswith("**Fixed.**")


def test_the_owners_template_wins_and_the_migration_seeded_them(db):
    assert MessageTemplate.objects.filter(stage="REPRODUCTION_REQUEST").exists()  # seeded by 0008
    MessageTemplate.objects.update_or_create(stage="FIXING", issue_type="", defaults={"text": "Hang on {name}!"})
    messages.forget_templates()
    assert messages.stage_message(stage=Stage.FIXING, issue_type="ERROR", name="Ada") == "Hang on Ada!"


def test_progress_steps_and_the_eta_falls_back_then_learns(db):
    messages.forget_durations()
    detected = messages.progress(stage=Stage.DETECTED)
    assert (detected.step, detected.steps, detected.final) == (1, 6, False)
    assert detected.eta_seconds == sum(messages.ETA_FALLBACK_SECONDS.values())
    assert messages.progress(stage=Stage.NEEDS_INPUT).eta_seconds is None  # waits on the user
    fixed = messages.progress(stage=Stage.RESOLVED)
    assert (fixed.step, fixed.eta_seconds, fixed.final) == (6, 0, True)
    # Recent issues verified in 2 s each: the estimate from verifying follows them.
    from datetime import timedelta

    from django.utils import timezone

    start = timezone.now() - timedelta(hours=1)
    for _ in range(3):
        issue = IssueFactory()
        IssueEvent.objects.create(issue=issue, stage=Stage.VERIFYING, message="", created_at=start)
        IssueEvent.objects.create(
            issue=issue, stage=Stage.DEPLOYED, message="", created_at=start + timedelta(seconds=2)
        )
    messages.forget_durations()
    assert messages.progress(stage=Stage.VERIFYING).eta_seconds == 2
