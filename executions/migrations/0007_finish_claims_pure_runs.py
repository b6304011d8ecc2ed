"""A pure node's first attempt can run before its claim: the finish claims it, and hands the next node's task
the document it starts from."""

import importlib

from django.db import migrations

FINISH = r"""
-- Records the outcome of a running run and moves the execution on, in one transaction. `d` is what the worker
-- decided: {run, kind: done|retry|defer|resume, status, action, output, error, logs, merge, error_doc, next:
-- {node_id, task_id, progress, context_bytes}, end: {status, error, results}, max_steps, step_limit_error,
-- max_bytes, retry: {delay}, defer: {seconds}, part: {base, span}, claim: {task_id, worker, elapsed, steps}}.
-- Python chooses edges and retries; this only swaps statuses.
-- With `claim`, the run ran before it was claimed (a pure node's first attempt, started from the context its
-- task carried): it is claimed here, in the same transaction, if it is still the queued run of that task and
-- the execution's document is still the one the task carried (`steps`); otherwise nothing is written and the
-- outcome is `unclaimed` (the task then claims and runs it as usual).
-- With next.context_bytes, the execution's document (up to that many bytes) comes back as `next_context`, for
-- the next node's task to carry.
-- Outcomes: done (with next_run, join_ready), retry (with retry_run), deferred, too_large (nothing written),
-- ended (the execution is over: the run was canceled), stale (the run is no longer running: nothing written),
-- unclaimed.
CREATE OR REPLACE FUNCTION flowrunner_finish(d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e executions_execution; r executions_noderun; nxt executions_noderun; p executions_noderun;
    events jsonb; frames jsonb; new_data jsonb; size integer; v_output jsonb := d->'output';
    kind text := d->>'kind'; next_id bigint; join_ready boolean := false; outcome text := 'done';
    doc_changed boolean := false; next_context jsonb;
BEGIN
    SELECT * INTO e FROM executions_execution
     WHERE id = (SELECT execution_id FROM executions_noderun WHERE id = (d->>'run')::bigint) FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'stale'); END IF;
    SELECT * INTO r FROM executions_noderun WHERE id = (d->>'run')::bigint;
    events := '[]'::jsonb;
    IF d ? 'claim' THEN
        IF r.status <> 'queued' OR r.task_id <> d->'claim'->>'task_id' OR r.parent_id IS NOT NULL
           OR e.status NOT IN ('queued', 'running') OR e.steps <> (d->'claim'->>'steps')::integer THEN
            RETURN jsonb_build_object('outcome', 'unclaimed');
        END IF;
        -- Only in memory until the run's own UPDATE below: a finish that writes nothing (too_large) leaves the
        -- run queued for the retried finish to claim.
        r.status := 'running';
        r.started_at := clock_timestamp() - make_interval(secs => (d->'claim'->>'elapsed')::double precision);
        r.worker := d->'claim'->>'worker';
        events := jsonb_build_array(flowrunner_node_event(r));
        IF e.status = 'queued' THEN
            e.status := 'running';
            e.started_at := r.started_at;
        END IF;
        e.current_node := r.node_id;
        events := events || jsonb_build_array(flowrunner_status_event(e));
    END IF;
    events := events || flowrunner_log_events(r.node_id, d->'logs');
    IF r.status <> 'running' OR (kind = 'resume' AND r.wait_until IS NULL) THEN
        outcome := 'stale';
    ELSIF e.status <> 'running' THEN
        events := events || flowrunner_cancel_open(r.id, 'execution ended');
        outcome := 'ended';
    ELSIF kind = 'defer' THEN
        UPDATE executions_noderun
           SET wait_until = now() + make_interval(secs => (d->'defer'->>'seconds')::double precision),
               output = v_output, heartbeat_at = now()
         WHERE id = r.id;
        outcome := 'deferred';
    ELSIF kind = 'retry' THEN
        UPDATE executions_noderun
           SET status = 'failed', action = coalesce(d->>'action', ''), error = coalesce(d->>'error', ''),
               finished_at = now(), started_at = r.started_at, worker = r.worker
         WHERE id = r.id RETURNING * INTO r;
        events := events || jsonb_build_array(flowrunner_node_event(r));
        INSERT INTO executions_noderun (execution_id, node_id, parent_id, parts_done, batch_index, attempt, step,
                                        status, action, input, error, task_id, worker, queued_at, not_before)
        VALUES (r.execution_id, r.node_id, r.parent_id, 0, r.batch_index, r.attempt + 1, r.step, 'retrying', '',
                r.input, '', r.task_id, '', now(),
                now() + make_interval(secs => (d->'retry'->>'delay')::double precision))
        RETURNING * INTO nxt;
        events := events || jsonb_build_array(flowrunner_node_event(nxt));
        next_id := nxt.id;
        outcome := 'retry';
    ELSE
        new_data := e.data;
        IF coalesce((d->>'merge')::boolean, false) AND v_output IS NOT NULL AND v_output <> 'null'::jsonb THEN
            IF jsonb_typeof(v_output) = 'object' THEN
                new_data := new_data || v_output;
            ELSE
                new_data := jsonb_set(new_data, '{result}', v_output, true);
            END IF;
        END IF;
        IF d->'error_doc' IS NOT NULL AND d->'error_doc' <> 'null'::jsonb THEN
            new_data := jsonb_set(new_data, '{error}', d->'error_doc', true);
        END IF;
        IF r.parent_id IS NULL AND new_data IS DISTINCT FROM e.data THEN
            size := octet_length(new_data::text);
            IF size > (d->>'max_bytes')::integer THEN
                RETURN jsonb_build_object('outcome', 'too_large', 'bytes', size);
            END IF;
        END IF;
        UPDATE executions_noderun
           SET status = d->>'status', action = coalesce(d->>'action', ''), error = coalesce(d->>'error', ''),
               output = CASE WHEN d->>'status' = 'succeeded' OR r.parent_id IS NOT NULL
                             THEN v_output ELSE r.output END,
               finished_at = now(), started_at = r.started_at, worker = r.worker
         WHERE id = r.id RETURNING * INTO r;
        events := events || jsonb_build_array(flowrunner_node_event(r));
        IF r.parent_id IS NOT NULL THEN
            -- A part: count it on its batch node; the part that completes the count says the join is due.
            UPDATE executions_noderun SET parts_done = parts_done + 1 WHERE id = r.parent_id
            RETURNING * INTO p;
            join_ready := p.parts_done >= p.parts_total;
            -- Its lane's next part is about to be published by the chain: restart that part's staleness clock,
            -- or a lane longer than STALE_AFTER would look lost to the reaper.
            UPDATE executions_noderun SET queued_at = now()
             WHERE parent_id = r.parent_id AND status = 'queued'
               AND batch_index = r.batch_index + greatest(1, coalesce((p.input->>'lanes')::integer, 1));
            e.progress := greatest(e.progress, least(99.0,
                (d->'part'->>'base')::double precision
                + (d->'part'->>'span')::double precision * p.parts_done / greatest(p.parts_total, 1)));
            events := events || jsonb_build_array(flowrunner_status_event(e));
        ELSE
            e.data := new_data;
            IF d->>'status' = 'succeeded' THEN
                e.node_outputs := jsonb_set(e.node_outputs, ARRAY[r.node_id], coalesce(v_output, 'null'::jsonb), true);
            END IF;
            IF d->'next' IS NOT NULL AND d->'next' <> 'null'::jsonb AND e.steps >= (d->>'max_steps')::integer THEN
                d := jsonb_set(d, '{end}', jsonb_build_object('status', 'failed', 'error', d->'step_limit_error'));
            END IF;
            IF d->'end' IS NOT NULL AND d->'end' <> 'null'::jsonb THEN
                e.status := d->'end'->>'status';
                e.error := d->'end'->>'error';
                e.finished_at := now();
                e.progress := 100.0;
                IF e.status = 'completed' THEN e.results := e.data; END IF;
                -- The stored results stay whole; the event shows the redacted copy the worker sent.
                events := events || jsonb_build_array(jsonb_set(flowrunner_status_event(e), '{body,status,results}',
                    CASE WHEN d->'end' ? 'results' THEN d->'end'->'results' ELSE coalesce(e.results, 'null') END));
            ELSE
                e.steps := e.steps + 1;
                INSERT INTO executions_noderun (execution_id, node_id, parts_done, attempt, step, status, action,
                                                error, task_id, worker, queued_at)
                VALUES (e.id, d->'next'->>'node_id', 0, 1, e.steps, 'queued', '', '',
                        coalesce(d->'next'->>'task_id', ''), '', now())
                RETURNING * INTO nxt;
                next_id := nxt.id;
                events := events || jsonb_build_array(flowrunner_node_event(nxt));
                e.progress := greatest(e.progress, least(99.0, (d->'next'->>'progress')::double precision));
                IF (d->'next'->>'context_bytes')::integer > 0
                   AND pg_column_size(e.data) + pg_column_size(e.node_outputs)
                       <= (d->'next'->>'context_bytes')::integer THEN
                    next_context := jsonb_build_object(
                        'data', e.data, 'node_outputs', e.node_outputs, 'steps', e.steps, 'progress', e.progress,
                        'has_secrets', EXISTS (SELECT 1 FROM accounts_secret s WHERE s.account_id = e.account_id));
                END IF;
                events := events || jsonb_build_array(flowrunner_status_event(e));
            END IF;
            doc_changed := true;
        END IF;
    END IF;
    IF doc_changed THEN
        UPDATE executions_execution
           SET data = e.data, node_outputs = e.node_outputs, steps = e.steps, status = e.status,
               error = e.error, finished_at = e.finished_at, results = e.results, progress = e.progress,
               started_at = e.started_at, current_node = e.current_node,
               last_event_seq = e.last_event_seq + jsonb_array_length(events)
         WHERE id = e.id;
    ELSIF jsonb_array_length(events) > 0 THEN
        UPDATE executions_execution
           SET progress = e.progress, last_event_seq = e.last_event_seq + jsonb_array_length(events),
               status = e.status, started_at = e.started_at, current_node = e.current_node
         WHERE id = e.id;
    END IF;
    frames := flowrunner_store_events(e.id, e.last_event_seq, events);
    RETURN jsonb_build_object('outcome', outcome, 'frames', frames, 'account_id', e.account_id::text,
                              'next_run', next_id, 'join_ready', join_ready, 'status', e.status,
                              'parent_id', r.parent_id, 'next_context', next_context);
END $$;
"""


def _previous_finish() -> str:
    engine = importlib.import_module("executions.migrations.0003_engine_functions")
    start = engine.FUNCTIONS.index("CREATE OR REPLACE FUNCTION flowrunner_finish(")
    end = engine.FUNCTIONS.index("END $$;", start) + len("END $$;")
    return engine.FUNCTIONS[start:end]


class Migration(migrations.Migration):
    dependencies = [("executions", "0006_status_body_waiting_reason")]

    operations = [migrations.RunSQL(FINISH, _previous_finish())]
