"""A run claimed by its finish starts `elapsed` before the finish's own time, so it never ends before it began."""

import importlib

from django.db import migrations

# now() is the finish's transaction time, which is also its finished_at; clock_timestamp() is later, so a run
# whose work took less than the statement had taken so far started after it finished.
BEFORE = "r.started_at := clock_timestamp() - make_interval(secs => (d->'claim'->>'elapsed')::double precision);"
AFTER = "r.started_at := now() - make_interval(secs => (d->'claim'->>'elapsed')::double precision);"


def _finishes() -> tuple[str, str]:
    previous = importlib.import_module("executions.migrations.0011_finish_reports_after_end")._finishes()[1]
    assert previous.count(BEFORE) == 1
    return previous, previous.replace(BEFORE, AFTER)


class Migration(migrations.Migration):
    dependencies = [("executions", "0012_lean_indexes")]

    operations = [migrations.RunSQL(_finishes()[1], _finishes()[0])]
