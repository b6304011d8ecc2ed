"""A batch part's first attempt can run before its claim too: the finish claims it while its batch node runs."""

import importlib

from django.db import migrations

REFUSED = "OR r.task_id <> d->'claim'->>'task_id' OR r.parent_id IS NOT NULL\n"
# A part is claimed only while its batch node runs (a deadline or a cancel ended it otherwise).
PART_REFUSED = (
    "OR r.task_id <> d->'claim'->>'task_id'\n"
    "           OR (r.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM executions_noderun b\n"
    "                                                       WHERE b.id = r.parent_id AND b.status = 'running'))\n"
)
# A part's start moves neither the execution's status nor its current node (its batch node's claim did).
STATUS = """        e.current_node := r.node_id;
        events := events || jsonb_build_array(flowrunner_status_event(e));
    END IF;
"""
PART_STATUS = """        IF r.parent_id IS NULL THEN
            e.current_node := r.node_id;
            events := events || jsonb_build_array(flowrunner_status_event(e));
        END IF;
    END IF;
"""


def _finishes() -> tuple[str, str]:
    previous = importlib.import_module("executions.migrations.0008_fold_status_events")._finishes()[1]
    assert previous.count(REFUSED) == 1 and previous.count(STATUS) == 1
    return previous, previous.replace(REFUSED, PART_REFUSED).replace(STATUS, PART_STATUS)


class Migration(migrations.Migration):
    dependencies = [("executions", "0008_fold_status_events")]

    operations = [migrations.RunSQL(_finishes()[1], _finishes()[0])]
