"""Bucketing and precedence: sticky, monotonic, evenly spread, and the same answers as Unleash."""

from datetime import timedelta

import pytest
from django.utils import timezone

from flags import evaluate, services
from flags.evaluate import bucket, flag_enabled, project_snapshot


def flags_evaluate(*, project_id, items):
    return evaluate.flags_evaluate(snapshot=project_snapshot(project_id=project_id), items=items)


# (groupId, userId, rollout %, expected) from Unleash's client specification
# (https://github.com/Unleash/client-specification):
UNLEASH_SPEC = [
    # specifications/03-gradual-rollout-user-id-strategy.json
    ("AB12A", "123", 100, True),  # Feature.A3
    ("AB12A", "122", 50, True),  # Feature.B3
    ("AB12A", "155", 50, False),  # Feature.B3
    ("AB12A", "122", 0, False),  # Feature.C3
    # specifications/10-flexible-rollout-strategy.json
    ("Feature.flexibleRollout.10", "174", 10, True),
    ("Feature.flexibleRollout.10", "499", 10, False),
    ("Feature.flexibleRollout.userId.55", "25", 55, True),
    ("Feature.flexibleRollout.sessionId.42", "147", 42, True),
    # specifications/12-custom-stickiness.json (the custom field is bucketed like a user id)
    ("Feature.flexible.rollout.custom.stickiness_50", "402", 50, False),
    ("Feature.flexible.rollout.custom.stickiness_50", "388", 50, True),
    ("Feature.flexible.rollout.custom.stickiness_50", "39", 50, True),
]

# (groupId, userId, bucket) from the Unleash Node client's cross-client test of normalizedValue
# (Unleash/unleash-client-node, src/test/strategy/util.test.ts).
UNLEASH_BUCKETS = [("gr1", "123", 73), ("groupX", "999", 25)]


@pytest.mark.parametrize(("group_id", "user_id", "expected"), UNLEASH_BUCKETS)
def test_bucket_matches_unleash_normalized_value(group_id, user_id, expected):
    assert bucket(group_id=group_id, user_id=user_id) == expected


@pytest.mark.parametrize(("group_id", "user_id", "percentage", "expected"), UNLEASH_SPEC)
def test_rollout_matches_unleash_specification(make_flag, project, group_id, user_id, percentage, expected):
    # Several vectors sit exactly on the boundary (174 → bucket 10 at 10 %, 25 → 55 at 55 %),
    # so they pin down "bucket ≤ percentage", not "<".
    make_flag(key="spec", enabled=True, rollout_percentage=percentage, group_id=group_id)
    assert flag_enabled(project_id=project.id, key="spec", user_id=user_id) is expected


def test_bucket_is_deterministic_and_group_specific():
    users = [f"user-{n}" for n in range(2000)]
    first = [bucket(group_id="checkout", user_id=u) for u in users]
    assert first == [bucket(group_id="checkout", user_id=u) for u in users]
    assert all(1 <= b <= 100 for b in first)
    other = [bucket(group_id="search", user_id=u) for u in users]
    assert sum(a == b for a, b in zip(first, other, strict=True)) < 100  # independent groups, ~1 % agree


def test_distribution_is_even_at_ten_percent():
    inside = sum(bucket(group_id="new-checkout", user_id=str(n)) <= 10 for n in range(100_000))
    assert 9_000 <= inside <= 11_000


def test_raising_the_rollout_only_adds_users(make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=10)
    users = [f"u{n}" for n in range(5000)]
    at_10 = {u for u in users if flag_enabled(project_id=project.id, key=flag.key, user_id=u)}
    services.flag_update(flag=flag, changes={"rollout_percentage": 50}, actor="alice", why="next phase")
    at_50 = {u for u in users if flag_enabled(project_id=project.id, key=flag.key, user_id=u)}
    assert at_10 < at_50
    assert 400 <= len(at_10) <= 600 and 2300 <= len(at_50) <= 2700


def test_group_id_defaults_to_the_key_and_drives_the_buckets(make_flag, project):
    flag = make_flag(key="beta", enabled=True, rollout_percentage=30)
    assert flag.group_id == "beta"
    users = [str(n) for n in range(300)]
    expected = {u for u in users if bucket(group_id="beta", user_id=u) <= 30}
    assert {u for u in users if flag_enabled(project_id=project.id, key="beta", user_id=u)} == expected


def test_zero_and_hundred_percent(make_flag, project):
    make_flag(key="none", enabled=True, rollout_percentage=0)
    make_flag(key="all", enabled=True, rollout_percentage=100)
    users = [str(n) for n in range(500)]
    assert not any(flag_enabled(project_id=project.id, key="none", user_id=u) for u in users)
    assert all(flag_enabled(project_id=project.id, key="all", user_id=u) for u in users)


def test_precedence_kill_then_override_then_disabled_then_percentage(make_flag, project):
    flag = make_flag(enabled=False, rollout_percentage=100)

    def reason(user):
        (result,) = flags_evaluate(project_id=project.id, items=[(flag.key, user)])
        return result.enabled, result.reason

    assert reason("anyone") == (False, "disabled")  # disabled beats 100 %
    services.override_set(flag=flag, user_id="canary", enabled=True, actor="kaizen", why="affected user")
    assert reason("canary") == (True, "override")  # an override beats disabled
    services.flag_update(flag=flag, changes={"enabled": True}, actor="alice", why="go")
    services.override_set(flag=flag, user_id="opted-out", enabled=False, actor="alice", why="asked")
    assert reason("opted-out") == (False, "override")  # an override beats the percentage
    assert reason("anyone") == (True, "rollout")
    services.flag_kill(flag=flag, actor="alice", why="errors")
    assert reason("canary") == (False, "killed")  # the kill switch beats everything
    assert reason("anyone") == (False, "killed")


def test_expired_override_no_longer_applies(make_flag, project, monkeypatch):
    flag = make_flag(enabled=True, rollout_percentage=0)
    soon = timezone.now() + timedelta(minutes=10)
    services.override_set(flag=flag, user_id="canary", enabled=True, actor="kaizen", why="canary", expires_at=soon)
    assert flag_enabled(project_id=project.id, key=flag.key, user_id="canary")
    monkeypatch.setattr(evaluate, "_wallclock", lambda: soon.timestamp() + 1)
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="canary")


def test_override_can_be_cleared(make_flag, project):
    flag = make_flag(enabled=True, rollout_percentage=0)
    services.override_set(flag=flag, user_id="canary", enabled=True, actor="kaizen")
    assert services.override_clear(flag=flag, user_id="canary", actor="kaizen", why="done")
    assert not services.override_clear(flag=flag, user_id="canary", actor="kaizen")
    assert not flag_enabled(project_id=project.id, key=flag.key, user_id="canary")


def test_unknown_flag(make_flag, project):
    make_flag(key="known")
    assert flag_enabled(project_id=project.id, key="nope", user_id="1") is False
    assert flag_enabled(project_id=project.id, key="nope", user_id="1", default=True) is True
    with pytest.raises(evaluate.UnknownFlag) as err:
        flags_evaluate(project_id=project.id, items=[("known", "1"), ("nope", "1"), ("gone", "2")])
    assert err.value.keys == ["gone", "nope"]


def test_flags_are_per_project(make_flag, project):
    from tests.factories import ProjectFactory

    make_flag(key="shared-name", enabled=True, rollout_percentage=100)
    other = ProjectFactory()
    services.flag_create(project=other, key="shared-name", actor="bob", enabled=False)
    assert flag_enabled(project_id=project.id, key="shared-name", user_id="1")
    assert not flag_enabled(project_id=other.id, key="shared-name", user_id="1")


def test_flag_enabled_answers_as_the_full_evaluation_in_every_state(make_flag, project, monkeypatch):
    """flag_enabled takes a shorter path than flags_evaluate (no reason built): the same answer
    for every user through kill switch, live and expired overrides, disabled and each percentage."""
    soon = timezone.now() + timedelta(minutes=10)
    flags = [make_flag(key=f"flag-{n}", enabled=n % 3 != 0, rollout_percentage=(n * 17) % 101) for n in range(12)]
    for n, flag in enumerate(flags):
        services.override_set(flag=flag, user_id="on", enabled=True, actor="kaizen")
        services.override_set(flag=flag, user_id="off", enabled=False, actor="kaizen")
        services.override_set(flag=flag, user_id="brief", enabled=n % 2 == 0, actor="kaizen", expires_at=soon)
        if n % 4 == 1:
            services.flag_kill(flag=flag, actor="alice", why="errors")
    users = ["on", "off", "brief", *(f"user-{n}" for n in range(200))]
    for now in (None, soon.timestamp() + 1):  # the brief overrides live, then expired
        if now is not None:
            monkeypatch.setattr(evaluate, "_wallclock", lambda now=now: now)
        for flag in flags:
            full = flags_evaluate(project_id=project.id, items=[(flag.key, user) for user in users])
            fast = [flag_enabled(project_id=project.id, key=flag.key, user_id=user) for user in users]
            assert fast == [result.enabled for result in full], flag.key
