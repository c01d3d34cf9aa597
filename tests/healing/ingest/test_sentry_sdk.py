"""The real sentry_sdk against the API served as the Procfile serves it."""

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sentry_sdk

from healing.models import Issue, Occurrence
from tests.healing.ingest.served import served_counter

# --- The real sentry_sdk against a live server ------------------------------------------------


@pytest.fixture
def sdk(served, project_key):
    """Initialise the real sentry_sdk with a DSN pointing at the served API; closed after, so it
    cannot report anything from later tests."""
    url = urlsplit(served)
    dsn = f"http://{project_key.public_key}@{url.hostname}:{url.port}/{project_key.project_id}"

    def init(**options):
        sentry_sdk.init(
            dsn=dsn,
            default_integrations=False,  # no logging/threading hooks in the test process
            auto_enabling_integrations=False,  # and no Django integration reporting the server's own requests
            send_client_reports=False,
            http_proxy="",  # the server is local; no proxy from the environment
            project_root=str(Path(__file__).resolve().parents[3]),
            **options,
        )

    yield init
    client = sentry_sdk.get_client()
    pool = getattr(client.transport, "_pool", None)
    client.close(timeout=5)
    sentry_sdk.get_global_scope().set_client(None)
    if pool is not None:
        pool.clear()  # the SDK keeps its HTTP connection alive


def checkout(order: dict) -> str:
    return order["sku"]  # raises KeyError: the in-app frame the issue is grouped by


def capture_checkout_failure() -> None:
    try:
        checkout({})
    except KeyError:
        sentry_sdk.capture_exception()


def test_real_sentry_sdk_reports_an_error_issue(sdk, drain, project):
    sdk(release="shop@2.0.0", environment="staging")
    with sentry_sdk.isolation_scope() as scope:
        scope.set_user({"id": "u-7", "email": "grace@example.com"})
        scope.set_tag("region", "eu")
        capture_checkout_failure()
        capture_checkout_failure()  # the same problem again: the same issue
    sentry_sdk.flush(timeout=10)
    drain()
    issue = Issue.objects.get(project=project)
    assert issue.type == "ERROR"
    assert issue.occurrence_count == 2 and issue.affected_users == 1
    assert issue.grouping == f"exception | KeyError | {__name__}.capture_checkout_failure | {__name__}.checkout"
    occurrences = list(issue.occurrences.all())
    assert len(occurrences) == 2
    for occurrence in occurrences:
        assert occurrence.source == "sentry"
        assert (occurrence.release, occurrence.environment) == ("shop@2.0.0", "staging")
        assert (occurrence.user_id, occurrence.user_email) == ("u-7", "grace@example.com")
        exception = occurrence.payload["exception"]
        assert (exception["type"], exception["value"]) == ("KeyError", "'sku'")
        in_app = [(f["module"], f["function"]) for f in exception["stacktrace"] if f.get("in_app")]
        assert in_app == [(__name__, "capture_checkout_failure"), (__name__, "checkout")]
        assert occurrence.payload["tags"]["region"] == "eu"
        assert occurrence.payload["tags"]["handled"] == "yes"


def test_real_sentry_sdk_obeys_the_rate_limit_answer(sdk, served, drain, project):
    def _answered(outcome: str) -> float:
        labels = {"source": "sentry", "outcome": outcome}
        return served_counter(served, name="kaizen_reports_received_total", labels=labels)

    project.rate_limit_per_minute = 0  # every request is over the quota
    project.save()
    before = _answered("rate_limited"), _answered("accepted")
    sdk()
    capture_checkout_failure()
    sentry_sdk.flush(timeout=10)
    capture_checkout_failure()  # dropped by the SDK itself: it never reaches the server
    sentry_sdk.flush(timeout=10)
    assert (_answered("rate_limited"), _answered("accepted")) == (before[0] + 1, before[1])
    drain()
    assert not Occurrence.objects.exists()
