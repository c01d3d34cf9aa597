from healing.ingest.fingerprint import fingerprint_report, normalize


def fp(**report):
    return fingerprint_report({"type": "ERROR", "message": "x", **report}).hash


def frames(*pairs, in_app=True, line=1):
    return [{"module": m, "function": f, "lineno": line, "in_app": in_app} for m, f in pairs]


def test_normalize_strips_what_varies_between_occurrences():
    text = (
        "User 42 (bob@example.com) order 3f2a9c1d-7e4b-4a7c-9a1e-2b3c4d5e6f70 id 0xdeadbeef hash a1b2c3d4e5f6 took 1.5s"
    )
    assert normalize(text) == "User <int> (<email>) order <uuid> id <hex> hash <hex> took <int>s"


def test_plain_words_and_short_hex_like_words_survive():
    assert normalize("Generate failed: cafe") == "Generate failed: cafe"


def test_client_fingerprint_wins_over_everything():
    a = fp(fingerprint=["billing-sync"], message="one", route="/a")
    b = fp(
        fingerprint=["billing-sync"],
        message="two",
        route="/b",
        exception={"type": "E", "stacktrace": frames(("m", "f"))},
    )
    assert a == b
    assert a != fp(fingerprint=["other"], message="one", route="/a")


def test_default_marker_in_client_fingerprint_combines_with_computed_grouping():
    base = {"exception": {"type": "KeyError", "stacktrace": frames(("app.views", "generate"))}}
    assert fp(fingerprint=["{{ default }}", "tenant-a"], **base) != fp(
        fingerprint=["{{ default }}", "tenant-b"], **base
    )
    assert fp(fingerprint=["{{ default }}", "tenant-a"], **base) == fp(
        fingerprint=["{{ default }}", "tenant-a"], message="other text", **base
    )


def test_stack_grouping_ignores_line_numbers_and_messages():
    a = fp(
        message="KeyError: 'user 1'",
        exception={"type": "KeyError", "value": "1", "stacktrace": frames(("app.views", "generate"), line=10)},
    )
    b = fp(
        message="KeyError: 'user 2'",
        exception={"type": "KeyError", "value": "2", "stacktrace": frames(("app.views", "generate"), line=99)},
    )
    assert a == b


def test_stack_grouping_uses_only_in_app_frames_when_marked():
    app = frames(("app.views", "generate"))
    lib_a = frames(("django.core", "handler"), in_app=False)
    lib_b = frames(("gunicorn.worker", "run"), in_app=False)
    assert fp(exception={"type": "E", "stacktrace": lib_a + app}) == fp(
        exception={"type": "E", "stacktrace": lib_b + app}
    )


def test_different_functions_or_exception_types_split_groups():
    assert fp(exception={"type": "E", "stacktrace": frames(("app", "a"))}) != fp(
        exception={"type": "E", "stacktrace": frames(("app", "b"))}
    )
    assert fp(exception={"type": "KeyError", "stacktrace": frames(("app", "a"))}) != fp(
        exception={"type": "ValueError", "stacktrace": frames(("app", "a"))}
    )


def test_exception_without_frames_groups_by_type_and_normalized_value():
    assert fp(exception={"type": "Timeout", "value": "after 30 s on job 17"}) == fp(
        exception={"type": "Timeout", "value": "after 31 s on job 18"}
    )


def test_message_grouping_strips_ids_and_keeps_route():
    a = fp(message="Credits missing for user 17 (a@b.co)", route="/billing/17/credits")
    b = fp(message="Credits missing for user 99 (c@d.org)", route="/billing/99/credits?ref=x")
    assert a == b
    assert a != fp(message="Credits missing for user 99 (c@d.org)", route="/generate")


def test_message_grouping_separates_types():
    assert fp(type="SILENT_FAILURE", message="Generate") != fp(type="ERROR", message="Generate")


def test_url_stands_in_for_a_missing_route():
    assert fp(message="slow", url="https://app/x/12") == fp(message="slow", url="https://app/x/13")


def test_grouping_text_explains_the_hash():
    result = fingerprint_report({"type": "ERROR", "message": "boom 5", "route": "/a"})
    assert result.grouping == "message | ERROR | boom <int> | /a"
    assert len(result.hash) == 64
