"""Verification replays the captured failing request against the live sandbox (the demo)."""

from healing.demo import product as demo
from healing.loop import verify

GENERATE_REPORT = {
    "type": "SILENT_FAILURE",
    "message": "Clicked Generate and nothing happened",
    "user": {"id": "alice"},
    "request": {
        "method": "POST",
        "path": "/demo/api/generate",
        "headers": {"X-Demo-User": "alice", "Cookie": "secret=1"},
        "body": {"prompt": "a cat"},
        "status": 202,
    },
}


def run(report, *, flag_key, new_occurrences=0):
    return verify.change_verify(
        replay=verify.replay_of(report),
        project_id=demo.demo_project_id() or 0,  # no demo project: nothing honours it anyway
        affected_user="alice",
        flag_key=flag_key,
        occurrences_before=10,
        occurrences_now=lambda: 10 + new_occurrences,
    )


def test_the_fix_flag_passes_ten_out_of_ten(sandbox):
    verdict = run(GENERATE_REPORT, flag_key=demo.FLAG_GENERATE_RETRY)
    assert verdict.passed, verdict.summary()
    assert [p.account for p in verdict.probes] == ["user"] * 5 + ["generic"] * 5
    assert {p.user_id for p in verdict.probes} == {"alice", verify.GENERIC_ACCOUNT}
    assert all(p.status == 200 and "a cat" in p.excerpt for p in verdict.probes)


def test_without_a_fix_the_failure_is_reproduced_and_verification_fails(sandbox):
    verdict = run(GENERATE_REPORT, flag_key=None)
    assert not verdict.passed
    assert verdict.summary() == "0/10 replays passed"
    assert verdict.probes[0].assertion == "reproduced the failure (202)"


def test_new_occurrences_meanwhile_fail_verification(sandbox):
    verdict = run(GENERATE_REPORT, flag_key=demo.FLAG_GENERATE_RETRY, new_occurrences=2)
    assert not verdict.passed
    assert "2 new occurrences" in verdict.summary()


def test_the_same_state_the_user_saw_counts_as_reproduced(sandbox):
    report = {
        "type": "BILLING_ISSUE",
        "message": "I paid for 100 credits but my balance still shows 0",
        "user": {"id": "alice"},
        "request": {"method": "GET", "path": "/demo/api/credits", "headers": {"X-Demo-User": "alice"}, "status": 200},
        "state": {"credits": 0, "pending": 100},
    }
    demo.purchase(user_id="alice", credits=100)
    before = run(report, flag_key=None)
    assert [p.passed for p in before.probes[:5]] == [False] * 5  # alice still sees her credits pending
    demo.credits_resync(user_id="alice")
    after = run(report, flag_key=None)
    assert after.passed, after.summary()


def test_no_replayable_request_and_unreachable_sandbox(settings, db):
    assert not run({"message": "x"}, flag_key=None).passed
    settings.KAIZEN_SANDBOX_URL = "http://127.0.0.1:9"
    verdict = run(GENERATE_REPORT, flag_key=demo.FLAG_GENERATE_RETRY)
    assert not verdict.passed
    assert verdict.probes[0].assertion.startswith("sandbox unreachable")


def test_credentials_and_probe_headers_from_the_report_are_not_replayed():
    replay = verify.replay_of({**GENERATE_REPORT, "request": {**GENERATE_REPORT["request"], "headers": {
        "X-Demo-User": "alice", "Cookie": "s=1", "X-Kaizen-Probe": "forged", "Host": "evil"}}})  # fmt: skip
    assert dict(replay.headers) == {"X-Demo-User": "alice"}
