"""Fewer index writes per node run: no index a composite one leads with, partial ones for open runs and parts."""

# A finished run, or one of no batch, is written to neither partial index. Built and dropped CONCURRENTLY, outside
# a transaction: a plain CREATE or DROP INDEX would hold the tables against every read and write meanwhile.

import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

# (index Django created with the foreign key, the statement that creates it again when the migration is reversed)
SINGLE_COLUMN_INDEXES = [
    ("executions_execution_account_id_7882fd18", "executions_execution (account_id)"),
    ("executions_execution_flow_id_a9ca7773", "executions_execution (flow_id)"),
    ("executions_execution_flow_id_a9ca7773_like", "executions_execution (flow_id varchar_pattern_ops)"),
    ("executions_executionevent_execution_id_5a623c7d", "executions_executionevent (execution_id)"),
    ("executions_noderun_execution_id_5ac7429c", "executions_noderun (execution_id)"),
]


def _foreign_key_without_index(model: str, name: str, related_name: str, to: str) -> migrations.AlterField:
    field = models.ForeignKey(
        db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to=to
    )
    return migrations.AlterField(model_name=model, name=name, field=field)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0003_callback_secret"),
        ("executions", "0011_finish_reports_after_end"),
        ("flows", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="execution", index=models.Index(fields=["flow"], name="execution_flow")
        ),
        AddIndexConcurrently(
            model_name="noderun",
            index=models.Index(
                condition=models.Q(("status__in", ["queued", "retrying", "running"])),
                fields=["status", "queued_at"],
                name="noderun_open",
            ),
        ),
        AddIndexConcurrently(
            model_name="noderun",
            index=models.Index(
                condition=models.Q(("parent__isnull", False)),
                fields=["parent", "status"],
                name="noderun_part",
            ),
        ),
        RemoveIndexConcurrently(model_name="noderun", name="executions__status_e71c39_idx"),
        RemoveIndexConcurrently(model_name="noderun", name="executions__parent__137d47_idx"),
        # Only the indexes go: Django's way (dropping and adding the foreign keys again) would also validate the
        # keys again over whole tables.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                _foreign_key_without_index("execution", "account", "executions", "accounts.account"),
                _foreign_key_without_index("execution", "flow", "executions", "flows.flow"),
                _foreign_key_without_index("executionevent", "execution", "events", "executions.execution"),
                _foreign_key_without_index("noderun", "execution", "node_runs", "executions.execution"),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}",
                )
                for name, definition in SINGLE_COLUMN_INDEXES
            ],
        ),
    ]
