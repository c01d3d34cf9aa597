"""Seed the default classification rules (editable in the admin afterwards)."""

from django.db import migrations

# (priority, name, match_type, message_regex, status_min, status_max, result_type, severity,
#  escalate_users, escalate_occurrences)
DEFAULT_RULES = [
    (
        10,
        "Payment taken but credits missing",
        "",
        r"(paid|payment|purchas|charged|bought).{0,80}(credits?|balance|plan|subscription).{0,40}"
        r"(missing|not (show|appear|updat|appl|add)|never|didn.?t|zero|still)"
        r"|(credits?|balance).{0,40}(missing|not (show|appear|updat|appl|add)).{0,80}(paid|payment|purchas)",
        None,
        None,
        "BILLING_ISSUE",
        "P0",
        None,
        None,
    ),
    (
        20,
        "Data loss",
        "",
        r"data loss|lost (my|all|the|our) (data|work|changes|files)|(data|work|changes) (was|were|got) (deleted|lost|wiped)",
        None,
        None,
        "DATA_INCONSISTENCY",
        "P0",
        None,
        None,
    ),
    (
        30,
        "Product blocked",
        "",
        r"\b(can.?t|cannot|unable to) (use|access|open|load) (the )?(app|site|product|dashboard)|nothing works|completely broken",
        None,
        None,
        "",
        "P0",
        None,
        None,
    ),
    (
        40,
        "Login or session failing",
        "",
        r"session (has )?expired|logged (me )?out|(login|log in|sign in|signin) (fail|error|broken|not working)|invalid (session|token)",
        None,
        None,
        "AUTH_ISSUE",
        "P1",
        10,
        None,
    ),
    (45, "Auth trouble", "AUTH_ISSUE", "", None, None, "", "P1", 10, None),
    (50, "Billing trouble", "BILLING_ISSUE", "", None, None, "", "P1", 5, None),
    (60, "Server error on the failing request", "", "", 500, 599, "", "P1", 20, 1000),
    (70, "Silent failure (a click that does nothing)", "SILENT_FAILURE", "", None, None, "", "P1", 25, None),
    (80, "Data mismatch", "DATA_INCONSISTENCY", "", None, None, "", "P1", 10, None),
    (90, "Unhandled error", "ERROR", "", None, None, "", "P2", 25, 500),
    (100, "Slow response", "SLOW_RESPONSE", "", None, None, "", "P2", 50, 2000),
    (110, "Help-button report", "USER_REPORTED", "", None, None, "", "P2", 10, None),
    (120, "Confusing UX", "UX_CONFUSION", "", None, None, "", "P3", 25, None),
]


def seed(apps, schema_editor):
    Rule = apps.get_model("healing", "ClassificationRule")
    for priority, name, match_type, regex, smin, smax, result, severity, users, occurrences in DEFAULT_RULES:
        Rule.objects.get_or_create(
            name=name,
            defaults=dict(
                priority=priority,
                match_type=match_type,
                message_regex=regex,
                status_min=smin,
                status_max=smax,
                result_type=result,
                severity=severity,
                escalate_users=users,
                escalate_occurrences=occurrences,
                description="Default rule.",
            ),
        )


def unseed(apps, schema_editor):
    apps.get_model("healing", "ClassificationRule").objects.filter(name__in=[r[1] for r in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("healing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
