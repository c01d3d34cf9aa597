from healing.models import Issue, Occurrence


def test_native_report_is_stored_grouped_and_routed(post_report, drain, broker):
    payload = {
        "message": "Generate did nothing for user 42",
        "type": "SILENT_FAILURE",
        "route": "/generate",
        "user": {"id": "42"},
    }
    first = post_report(payload)
    second = post_report({**payload, "message": "Generate did nothing for user 43", "user": {"id": "43"}})
    assert first.status_code == 202, first.content
    assert first.json()["issue_id"] == second.json()["issue_id"]
    drain()
    issue = Issue.objects.get()
    assert (issue.occurrence_count, issue.affected_users, issue.severity) == (2, 2, "P1")
    assert Occurrence.objects.count() == 2
    assert broker.llen("P1") == 1
