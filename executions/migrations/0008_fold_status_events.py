"""A finish stores one `status` event per status it passes through: progress and current-node moves made in one
transaction reach subscribers as the last of them, not one frame each."""

import importlib

from django.db import migrations

FOLD = r"""
-- `events` without each status event followed, later in the list, by another status event with the same
-- execution status: those frames are committed together, so no reader could have seen the earlier one's state,
-- and the later one carries its progress and current node. A change of status (queued -> running -> completed)
-- keeps a frame of its own.
CREATE OR REPLACE FUNCTION flowrunner_fold_status(events jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE kept jsonb := '[]'::jsonb; ev jsonb; later text; i integer;
BEGIN
    FOR i IN REVERSE jsonb_array_length(events) - 1..0 LOOP
        ev := events->i;
        IF ev->>'type' = 'status' THEN
            CONTINUE WHEN later = ev->'body'->'status'->>'status';
            later := ev->'body'->'status'->>'status';
        END IF;
        kept := jsonb_build_array(ev) || kept;
    END LOOP;
    RETURN kept;
END $$;
"""

STORE = "    IF doc_changed THEN\n"


def _finishes() -> tuple[str, str]:
    previous = importlib.import_module("executions.migrations.0007_finish_claims_pure_runs").FINISH
    assert previous.count(STORE) == 1
    return previous, previous.replace(STORE, "    events := flowrunner_fold_status(events);\n" + STORE)


class Migration(migrations.Migration):
    dependencies = [("executions", "0007_finish_claims_pure_runs")]

    operations = [
        migrations.RunSQL(FOLD, "DROP FUNCTION IF EXISTS flowrunner_fold_status(jsonb);"),
        migrations.RunSQL(_finishes()[1], _finishes()[0]),
    ]
