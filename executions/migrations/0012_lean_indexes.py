"""Fewer index writes per node run: no index a composite one already leads with, and partial indexes for open runs
and batch parts (a finished run, or one of no batch, is written to neither)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_callback_secret"),
        ("executions", "0011_finish_reports_after_end"),
        ("flows", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="noderun",
            name="executions__status_e71c39_idx",
        ),
        migrations.RemoveIndex(
            model_name="noderun",
            name="executions__parent__137d47_idx",
        ),
        # Only the indexes go: dropping and re-adding the foreign keys (Django's way) would validate them again
        # over whole tables.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="execution",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="executions",
                        to="accounts.account",
                    ),
                ),
                migrations.AlterField(
                    model_name="execution",
                    name="flow",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="executions",
                        to="flows.flow",
                    ),
                ),
                migrations.AlterField(
                    model_name="executionevent",
                    name="execution",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="executions.execution",
                    ),
                ),
                migrations.AlterField(
                    model_name="noderun",
                    name="execution",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="node_runs",
                        to="executions.execution",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "DROP INDEX IF EXISTS executions_execution_account_id_7882fd18; "
                    "DROP INDEX IF EXISTS executions_execution_flow_id_a9ca7773; "
                    "DROP INDEX IF EXISTS executions_execution_flow_id_a9ca7773_like; "
                    "DROP INDEX IF EXISTS executions_executionevent_execution_id_5a623c7d; "
                    "DROP INDEX IF EXISTS executions_noderun_execution_id_5ac7429c",
                    "CREATE INDEX executions_execution_account_id_7882fd18 ON executions_execution (account_id); "
                    "CREATE INDEX executions_execution_flow_id_a9ca7773 ON executions_execution (flow_id); "
                    "CREATE INDEX executions_execution_flow_id_a9ca7773_like "
                    "ON executions_execution (flow_id varchar_pattern_ops); "
                    "CREATE INDEX executions_executionevent_execution_id_5a623c7d "
                    "ON executions_executionevent (execution_id); "
                    "CREATE INDEX executions_noderun_execution_id_5ac7429c ON executions_noderun (execution_id)",
                )
            ],
        ),
        migrations.AddIndex(
            model_name="execution",
            index=models.Index(fields=["flow"], name="execution_flow"),
        ),
        migrations.AddIndex(
            model_name="noderun",
            index=models.Index(
                condition=models.Q(("status__in", ["queued", "retrying", "running"])),
                fields=["status", "queued_at"],
                name="noderun_open",
            ),
        ),
        migrations.AddIndex(
            model_name="noderun",
            index=models.Index(
                condition=models.Q(("parent__isnull", False)),
                fields=["parent", "status"],
                name="noderun_part",
            ),
        ),
    ]
