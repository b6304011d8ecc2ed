"""Starting an execution is one statement: the execution row, its first node run and their events."""

from django.db import migrations

START = r"""
-- d = {execution: {column: value, ...every column}, run: {column: value, ...every column but id} | null}.
-- Inserts the execution (its last_event_seq counting the events below), the run if given, a `status` event and
-- the run's `node` event; returns {run: id, frames, account_id, has_secrets}. Unique violations (a repeated
-- idempotency key) raise as from a plain INSERT. Rows come whole from the caller, so a plain column added later
-- needs no change here (a column with a database-side default or a generated one would: the caller sends a value
-- for every column).
CREATE OR REPLACE FUNCTION flowrunner_start(d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e executions_execution := jsonb_populate_record(NULL::executions_execution, d->'execution');
    r executions_noderun; events jsonb; frames jsonb; has_run boolean := jsonb_typeof(d->'run') = 'object';
BEGIN
    events := jsonb_build_array(flowrunner_status_event(e));
    IF has_run THEN
        r := jsonb_populate_record(NULL::executions_noderun, d->'run');
        r.execution_id := e.id;
        r.id := nextval(pg_get_serial_sequence('executions_noderun', 'id'));
        events := events || jsonb_build_array(flowrunner_node_event(r));
    END IF;
    e.last_event_seq := jsonb_array_length(events);
    INSERT INTO executions_execution SELECT (e).*;
    IF has_run THEN
        INSERT INTO executions_noderun SELECT (r).*;
    END IF;
    frames := flowrunner_store_events(e.id, 0, events);
    RETURN jsonb_build_object('run', r.id, 'frames', frames, 'account_id', e.account_id::text,
                              'has_secrets', EXISTS (SELECT 1 FROM accounts_secret s WHERE s.account_id = e.account_id));
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("executions", "0009_finish_claims_batch_parts"), ("accounts", "0001_initial")]

    operations = [migrations.RunSQL(START, "DROP FUNCTION IF EXISTS flowrunner_start(jsonb);")]
