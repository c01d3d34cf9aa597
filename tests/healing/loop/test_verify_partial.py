"""A fix that works 9 times out of 10 is not verified: one failing replay of ten aborts the Change.

The sandbox is the live demo; its "Generate" fix is made to fail exactly one job (the upstream
drops it despite the retry), as a flaky fix would in production.
"""

import pytest

from flags.evaluate import flag_enabled
from flags.models import Flag, Override, PromotionPolicy, Rollout
from healing.demo import product as demo
from healing.loop import verify
from healing.models import Change, ChangeStatus, Issue, Stage
from tests.healing.loop.test_pipeline import GENERATE, report, stages

pytestmark = pytest.mark.django_db(transaction=True)

REPLAYS = 2 * verify.RUNS_PER_ACCOUNT


@pytest.fixture
def sandbox(sandbox, settings):
    settings.KAIZEN_INGEST_MODE = "direct"
    PromotionPolicy.objects.update_or_create(
        project=None, defaults={"max_auto_exposure": 100, "blocked_from_hour": None, "blocked_to_hour": None}
    )
    return sandbox


@pytest.fixture
def flaky_generate(monkeypatch):
    """Makes the sandbox's Generate drop the job on its `n`th call (1-based) only; the live server
    runs in this process, so the patched module function is what it calls."""
    real = demo.generate
    calls = []

    def fail_on(n: int) -> list[int]:
        def generate(*, prompt: str, retry: bool) -> demo.GenerateResult:
            calls.append(len(calls) + 1)
            if len(calls) == n:
                return demo.GenerateResult(result=None)
            return real(prompt=prompt, retry=retry)

        monkeypatch.setattr(demo, "generate", generate)
        return calls

    return fail_on


@pytest.mark.parametrize("failing", [1, verify.RUNS_PER_ACCOUNT + 1, REPLAYS])
def test_one_failed_replay_of_ten_fails_the_verdict(sandbox, flaky_generate, failing):
    calls = flaky_generate(failing)
    verdict = verify.change_verify(
        replay=verify.replay_of(GENERATE),
        project_id=demo.demo_project_id(),
        affected_user="alice",
        flag_key=demo.FLAG_GENERATE_RETRY,
        occurrences_before=3,
        occurrences_now=lambda: 3,
    )
    assert len(calls) == REPLAYS  # every replay ran: the failure is not hidden by stopping early
    assert [p.passed for p in verdict.probes] == [n != failing for n in range(1, REPLAYS + 1)]
    assert verdict.probes[failing - 1].assertion == "reproduced the failure (202)"
    assert not verdict.passed
    assert verdict.summary() == "9/10 replays passed"


def test_nine_of_ten_aborts_the_change_and_nobody_gets_the_fix(sandbox, flaky_generate):
    flaky_generate(REPLAYS)  # the very last replay, the generic account's fifth
    issue = report(GENERATE)

    assert stages(issue)[-2:] == ["verifying", "aborted"]
    change = Change.objects.get(issue=issue)
    assert change.status == ChangeStatus.ABORTED
    verification = change.scorecard["verification"]
    assert verification["passed"] is False
    assert verification["summary"] == "9/10 replays passed"
    assert [p["passed"] for p in verification["probes"]] == [True] * (REPLAYS - 1) + [False]
    assert Issue.objects.get(pk=issue.pk).stage == Stage.ABORTED
    # The fix never left the sandbox: no rollout, no canary override, the flag still off.
    assert not Rollout.objects.exists()
    assert not Override.objects.filter(flag__key=demo.FLAG_GENERATE_RETRY).exists()
    flag = Flag.objects.get(project__slug=demo.DEMO_SLUG, key=demo.FLAG_GENERATE_RETRY)
    assert (flag.rollout_percentage, flag.killed) == (0, False)
    assert not any(flag_enabled(project_id=flag.project_id, key=flag.key, user_id=u) for u in ("alice", "bob"))
