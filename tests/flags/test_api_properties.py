"""Generated input against the flag evaluation API, which every browser calls with the public
key: never a 5xx, a refusal is a JSON `{"error", "detail"}` body, and an answer covers exactly
the pairs asked about."""

from urllib.parse import quote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags.models import FlagChange
from tests.strategies import PROPERTY, as_json, json_values

pytestmark = pytest.mark.django_db

pairs = st.lists(
    st.fixed_dictionaries(
        {"flag": st.sampled_from(["on", "half", "nope"]) | st.text(max_size=110), "user": st.text(max_size=210)}
    )
    | json_values,
    max_size=5,
)
bodies = st.one_of(
    st.fixed_dictionaries({"items": pairs}).map(as_json),
    json_values.map(as_json),
    st.binary(max_size=300),
)


@pytest.fixture
def flags(make_flag):
    make_flag(key="on", enabled=True, rollout_percentage=100)
    make_flag(key="half", enabled=True, rollout_percentage=50)


def refusal(response) -> str:
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}
    return body["error"]


@PROPERTY
@given(body=bodies)
def test_batch_evaluate(client, project_key, flags, body):
    changes = FlagChange.objects.count()
    response = client.post(
        "/api/v1/flags/evaluate", data=body, content_type="application/json", HTTP_X_KAIZEN_KEY=project_key.public_key
    )
    assert response.status_code < 500
    assert FlagChange.objects.count() == changes  # reading never writes
    if response.status_code >= 400:
        assert refusal(response)
        return
    sent = [(item["flag"], item["user"]) for item in orjson.loads(body)["items"]]
    assert [(r["flag"], r["user"]) for r in response.json()["results"]] == sent


@PROPERTY
@given(user=st.text(max_size=250))
def test_flags_for_any_user(client, project_key, flags, user):
    response = client.get(f"/api/v1/flags?user={quote(user, safe='')}", HTTP_X_KAIZEN_KEY=project_key.public_key)
    if response.status_code == 200:
        assert response.json()["user"] == user and set(response.json()["flags"]) == {"on", "half"}
    else:
        assert (response.status_code, refusal(response)) == (400, "invalid")
