# Drops the single-column indexes Django gives foreign keys where a composite index or unique
# constraint already leads with the column (see healing.models.issues). Only the indexes go: the
# generated AlterField would also drop and re-create each foreign key constraint, which checks
# every row of the occurrences table again under a lock that holds off ingest.

import django.db.models.deletion
from django.db import migrations, models

# (table, column, index name): the names Django generated for these foreign keys.
COVERED = [
    ("healing_issue", "project_id", "healing_issue_project_id_173ae587"),
    ("healing_issueuser", "issue_id", "healing_issueuser_issue_id_f4b0538b"),
    ("healing_occurrence", "issue_id", "healing_occurrence_issue_id_98ab7f4b"),
    ("healing_occurrence", "project_id", "healing_occurrence_project_id_3679e707"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("healing", "0011_audit_ip"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ("{column}")',
                )
                for table, column, index in COVERED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="issue",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="issues",
                        to="healing.project",
                    ),
                ),
                migrations.AlterField(
                    model_name="issueuser",
                    name="issue",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE, to="healing.issue"
                    ),
                ),
                migrations.AlterField(
                    model_name="occurrence",
                    name="issue",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="occurrences",
                        to="healing.issue",
                    ),
                ),
                migrations.AlterField(
                    model_name="occurrence",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="occurrences",
                        to="healing.project",
                    ),
                ),
            ],
        ),
    ]
