# Drops the single-column indexes Django gives foreign keys where a composite index or unique
# constraint already leads with the column (see healing.models.issues). Only the indexes go: the
# generated AlterField would also drop and re-create each foreign key constraint, which checks
# every row of the occurrences table again under a lock that holds off ingest.

import django.db.models.deletion
from django.db import migrations, models

# (model, field, its related_name, the model it points to, the index Django generated for it)
COVERED = [
    ("issue", "project", "issues", "healing.project", "healing_issue_project_id_173ae587"),
    ("issueuser", "issue", None, "healing.issue", "healing_issueuser_issue_id_f4b0538b"),
    ("occurrence", "issue", "occurrences", "healing.issue", "healing_occurrence_issue_id_98ab7f4b"),
    ("occurrence", "project", "occurrences", "healing.project", "healing_occurrence_project_id_3679e707"),
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
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{index}" ON "healing_{model}" ("{field}_id")',
                )
                for model, field, _, _, index in COVERED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name=model,
                    name=field,
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name=related_name,
                        to=to,
                    ),
                )
                for model, field, related_name, to, _ in COVERED
            ],
        ),
    ]
