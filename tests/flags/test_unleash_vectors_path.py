"""Unleash's vectors through the path evaluation really takes: the compiled snapshot (which
inlines the hash rather than calling `bucket`) and the HTTP API that serves it, not the helper.

Each bucket vector is checked on both sides of its boundary (on at exactly its bucket, off one
below), so an off-by-one in the inlined comparison or modulo cannot hide behind a vector that
happens to sit away from the edge.
"""

import orjson
import pytest

from flags import evaluate, services
from flags.evaluate import bucket, project_snapshot
from tests.flags.test_evaluate import UNLEASH_BUCKETS, UNLEASH_SPEC

pytestmark = pytest.mark.django_db

# (group, user, percentage, expected): the specification's vectors, plus each known bucket at
# its own percentage (in) and one below (out).
VECTORS = UNLEASH_SPEC + [
    (group, user, percentage, percentage == expected_bucket)
    for group, user, expected_bucket in UNLEASH_BUCKETS
    for percentage in (expected_bucket, expected_bucket - 1)
]


@pytest.fixture
def vector_flags(project):
    """One flag per vector, keyed `v<index>`, bucketed by the vector's group."""
    for index, (group, _user, percentage, _expected) in enumerate(VECTORS):
        services.flag_create(
            project=project, key=f"v{index}", actor="alice", enabled=True, rollout_percentage=percentage, group_id=group
        )
    return {f"v{index}": (user, expected) for index, (_group, user, _percentage, expected) in enumerate(VECTORS)}


def test_the_compiled_snapshot_answers_the_vectors(project, vector_flags):
    snapshot = project_snapshot(project_id=project.id)
    answers = {key: snapshot.flags[key].evaluate(user).enabled for key, (user, _) in vector_flags.items()}
    assert answers == {key: expected for key, (_, expected) in vector_flags.items()}


def test_the_batch_evaluate_api_answers_the_vectors(client, project_key, vector_flags):
    items = [{"flag": key, "user": user} for key, (user, _) in vector_flags.items()]
    response = client.post(
        "/api/v1/flags/evaluate",
        data=orjson.dumps({"items": items}),
        content_type="application/json",
        HTTP_X_KAIZEN_KEY=project_key.public_key,
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert {r["flag"]: r["enabled"] for r in results} == {key: expected for key, (_, expected) in vector_flags.items()}
    assert {r["reason"] for r in results} == {"rollout"}


def test_the_flags_for_user_api_answers_the_vectors(client, project_key, vector_flags):
    for key, (user, expected) in vector_flags.items():
        response = client.get("/api/v1/flags", {"user": user}, HTTP_X_KAIZEN_KEY=project_key.public_key)
        assert response.status_code == 200, response.content
        assert response.json()["flags"][key] is expected, (key, user)


def test_the_inlined_comparison_agrees_with_bucket_at_every_percentage(project):
    """Every percentage 0–100 over a spread of users: what the snapshot serves is exactly
    "bucket ≤ percentage", users included at p stay included above it."""
    services.flag_create(project=project, key="edge", actor="alice", enabled=True, rollout_percentage=0)
    users = [f"user-{n}" for n in range(300)] + ["", "ü", "0", " padded "]
    buckets = {u: bucket(group_id="edge", user_id=u) for u in users}
    for percentage in range(101):
        compiled = evaluate.CompiledFlag(
            key="edge", killed=False, enabled=True, percentage=percentage, prefix="edge:", overrides={}
        )
        served = {u for u in users if compiled.evaluate(u).enabled}
        assert served == {u for u, b in buckets.items() if b <= percentage}, percentage
    # The same through a real snapshot at the two edges that matter most.
    for percentage, expected in ((1, {u for u, b in buckets.items() if b == 1}), (99, set(users) - {
            u for u, b in buckets.items() if b == 100})):  # fmt: skip
        services.flag_update(
            flag=project.flags.get(key="edge"), changes={"rollout_percentage": percentage}, actor="alice", why="edge"
        )
        snapshot = project_snapshot(project_id=project.id)
        assert {u for u in users if snapshot.flags["edge"].evaluate(u).enabled} == expected
