"""Dead letters for ingest, and occurrences de-duplicated by (project, event id) instead of (issue, event id)."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.db.models import Count, Min


def occurrence_project_fill(apps, schema_editor):
    """Copy each occurrence's project from its issue. Rows the old constraint allowed but the new
    one refuses (one event id in two issues of a project) keep their data under a fresh id."""
    Occurrence = apps.get_model("healing", "Occurrence")
    connection = schema_editor.connection
    table, issues = Occurrence._meta.db_table, apps.get_model("healing", "Issue")._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET project_id = (SELECT project_id FROM {issues} WHERE {issues}.id = {table}.issue_id)"  # noqa: S608
        )
    clashes = (
        Occurrence.objects.values("project_id", "event_id").annotate(n=Count("id"), keep=Min("id")).filter(n__gt=1)
    )
    for clash in clashes:
        later = Occurrence.objects.filter(project_id=clash["project_id"], event_id=clash["event_id"])
        for pk in later.exclude(id=clash["keep"]).values_list("id", flat=True):
            Occurrence.objects.filter(id=pk).update(event_id=uuid.uuid4())
    if connection.vendor == "postgresql":
        # The new foreign key is deferred; its pending checks would forbid the ALTER TABLE below.
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("healing", "0005_rca"),
    ]

    operations = [
        migrations.CreateModel(
            name="IngestDeadLetter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("entry_id", models.CharField(help_text="The entry's id in the Redis stream.", max_length=40)),
                ("stream", models.CharField(max_length=200)),
                ("event_id", models.UUIDField(blank=True, null=True)),
                (
                    "raw",
                    models.BinaryField(help_text="The entry's fields exactly as they were in the stream (JSON)."),
                ),
                ("error", models.TextField()),
                ("attempts", models.PositiveSmallIntegerField()),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "stored_at",
                    models.DateTimeField(blank=True, help_text="When a retry from the console stored it.", null=True),
                ),
                (
                    "project",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="healing.project",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [models.Index(fields=["-created_at"], name="healing_ing_created_150005_idx")],
            },
        ),
        migrations.RemoveConstraint(
            model_name="occurrence",
            name="occurrence_unique_event",
        ),
        migrations.AddField(
            model_name="occurrence",
            name="project",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="occurrences",
                to="healing.project",
            ),
        ),
        migrations.RunPython(occurrence_project_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="occurrence",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="occurrences", to="healing.project"
            ),
        ),
        migrations.AddConstraint(
            model_name="occurrence",
            constraint=models.UniqueConstraint(fields=("project", "event_id"), name="occurrence_unique_project_event"),
        ),
    ]
