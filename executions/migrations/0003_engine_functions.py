"""PL/pgSQL functions of the node-run state machine: each claim, finish and batch start is one statement."""

from django.db import migrations

FUNCTIONS = r"""
-- Helpers are PL/pgSQL, not SQL functions: PL/pgSQL keeps its plans for the session, a non-inlined SQL function
-- is planned again on every call (measured: 0.3 ms per event insert, 0.18 ms per status body).
CREATE OR REPLACE FUNCTION flowrunner_iso(ts timestamptz) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF ts IS NULL THEN RETURN NULL; END IF;
    RETURN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00';
END $$;

-- The ExecutionStatus of a status event, as the row `e` is now. No `input`: a caller's input can be large and
-- is in the REST detail and the subscribe snapshot; every status event repeating it multiplied it per event.
CREATE OR REPLACE FUNCTION flowrunner_status_body(e executions_execution) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE label text;
BEGIN
    SELECT v.version INTO label FROM flows_flowversion v WHERE v.id = e.flow_version_id;
    RETURN jsonb_build_object('status', jsonb_build_object(
        'id', e.id::text,
        'flow_id', e.flow_id,
        'flow_version', label,
        'status', e.status,
        'progress', round(e.progress::numeric, 2),
        'current_node', nullif(e.current_node, ''),
        'error', e.error,
        'results', e.results,
        'start_time', flowrunner_iso(e.started_at),
        'end_time', flowrunner_iso(e.finished_at),
        'created_at', flowrunner_iso(e.created_at)));
END $$;

CREATE OR REPLACE FUNCTION flowrunner_node_event(r executions_noderun) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN jsonb_build_object('type', 'node', 'node_id', r.node_id, 'body', jsonb_build_object('node',
        jsonb_build_object('node_id', r.node_id, 'batch_index', r.batch_index, 'attempt', r.attempt,
                           'status', r.status, 'action', nullif(r.action, ''), 'error', nullif(r.error, ''))));
END $$;

CREATE OR REPLACE FUNCTION flowrunner_status_event(e executions_execution) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object('type', 'status', 'node_id', e.current_node, 'body', flowrunner_status_body(e));
END $$;

-- Stores `events` ([{type, node_id, body}]) with the seqs after `base` and returns their frames. The caller
-- holds the execution's row lock and writes last_event_seq = base + count in the same transaction.
CREATE OR REPLACE FUNCTION flowrunner_store_events(p_execution uuid, base integer, events jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := clock_timestamp(); iso text := flowrunner_iso(clock_timestamp());
    frames jsonb := '[]'::jsonb; ev jsonb; frame jsonb; seq integer := base; node text;
BEGIN
    FOR ev IN SELECT value FROM jsonb_array_elements(events) LOOP
        seq := seq + 1;
        node := coalesce(ev->>'node_id', '');
        frame := jsonb_build_object('type', ev->>'type', 'execution_id', p_execution::text, 'seq', seq,
                                    'timestamp', iso)
                 || CASE WHEN node <> '' THEN jsonb_build_object('node_id', node) ELSE '{}'::jsonb END
                 || coalesce(ev->'body', '{}'::jsonb);
        frames := frames || jsonb_build_array(frame);
    END LOOP;
    INSERT INTO executions_executionevent (execution_id, seq, type, node_id, payload, created_at)
    SELECT p_execution, (f->>'seq')::integer, f->>'type', coalesce(f->>'node_id', ''), f, at
      FROM jsonb_array_elements(frames) AS t(f);
    RETURN frames;
END $$;

-- Log events of a finish: [{level, message, data, timestamp}] as {type: log} events.
CREATE OR REPLACE FUNCTION flowrunner_log_events(node_id text, logs jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE l jsonb; events jsonb := '[]'::jsonb;
BEGIN
    IF logs IS NULL OR jsonb_array_length(logs) = 0 THEN RETURN events; END IF;
    FOR l IN SELECT value FROM jsonb_array_elements(logs) LOOP
        events := events || jsonb_build_array(jsonb_build_object('type', 'log', 'node_id', node_id, 'body',
            jsonb_build_object('log', jsonb_build_object(
                'timestamp', l->'timestamp', 'node_id', nullif(node_id, ''), 'level', l->'level',
                'message', l->'message', 'data', l->'data'))));
    END LOOP;
    RETURN events;
END $$;

-- Ends run `r` (still open) as canceled because its execution or batch node ended; returns its event.
CREATE OR REPLACE FUNCTION flowrunner_cancel_open(p_run bigint, reason text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE r executions_noderun;
BEGIN
    UPDATE executions_noderun SET status = 'canceled', finished_at = now(), error = reason
     WHERE id = p_run AND status IN ('queued', 'retrying', 'running')
    RETURNING * INTO r;
    IF NOT FOUND THEN RETURN '[]'::jsonb; END IF;
    RETURN jsonb_build_array(flowrunner_node_event(r));
END $$;

-- queued|retrying -> running. Outcomes: claimed (with what the worker needs), busy (a batch node already
-- runs max_parallel parts), interrupted (this very task claimed it before and died or lost its connection),
-- ended (the execution or batch node is over: the run is canceled), taken (anything else: not ours).
CREATE OR REPLACE FUNCTION flowrunner_claim(p_run bigint, p_task text, p_worker text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e executions_execution; r executions_noderun; p executions_noderun;
    events jsonb := '[]'::jsonb; frames jsonb; running integer;
BEGIN
    SELECT * INTO e FROM executions_execution
     WHERE id = (SELECT execution_id FROM executions_noderun WHERE id = p_run) FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'taken'); END IF;
    SELECT * INTO r FROM executions_noderun WHERE id = p_run;
    IF r.status = 'running' AND p_task <> '' AND r.task_id = p_task AND r.wait_until IS NULL
       AND r.parts_total IS NULL THEN
        RETURN jsonb_build_object('outcome', 'interrupted');
    END IF;
    IF r.status NOT IN ('queued', 'retrying') THEN RETURN jsonb_build_object('outcome', 'taken'); END IF;
    IF r.parent_id IS NOT NULL THEN
        SELECT * INTO p FROM executions_noderun WHERE id = r.parent_id;
    END IF;
    IF e.status NOT IN ('queued', 'running') OR (r.parent_id IS NOT NULL AND p.status <> 'running') THEN
        events := flowrunner_cancel_open(p_run,
            CASE WHEN e.status NOT IN ('queued', 'running') THEN 'execution ended' ELSE 'batch node ended' END);
        UPDATE executions_execution SET last_event_seq = e.last_event_seq + jsonb_array_length(events)
         WHERE id = e.id;
        frames := flowrunner_store_events(e.id, e.last_event_seq, events);
        RETURN jsonb_build_object('outcome', 'ended', 'frames', frames, 'account_id', e.account_id::text);
    END IF;
    IF r.parent_id IS NOT NULL THEN
        SELECT count(*) INTO running FROM executions_noderun
         WHERE parent_id = r.parent_id AND status = 'running';
        IF running >= greatest(1, coalesce((p.input->>'lanes')::integer, 1)) THEN
            -- It waits its turn (its task asks again): not a message the reaper should take for lost.
            UPDATE executions_noderun SET queued_at = now() WHERE id = p_run;
            RETURN jsonb_build_object('outcome', 'busy');
        END IF;
    END IF;
    UPDATE executions_noderun
       SET status = 'running', started_at = now(), heartbeat_at = now(), worker = p_worker,
           task_id = CASE WHEN p_task <> '' THEN p_task ELSE task_id END, wait_until = NULL
     WHERE id = p_run
    RETURNING * INTO r;
    events := jsonb_build_array(flowrunner_node_event(r));
    IF r.parent_id IS NULL THEN
        IF e.status = 'queued' THEN
            e.status := 'running';
            e.started_at := now();
        END IF;
        e.current_node := r.node_id;
        events := events || jsonb_build_array(flowrunner_status_event(e));
    END IF;
    UPDATE executions_execution
       SET status = e.status, started_at = e.started_at, current_node = e.current_node,
           last_event_seq = e.last_event_seq + jsonb_array_length(events)
     WHERE id = e.id;
    frames := flowrunner_store_events(e.id, e.last_event_seq, events);
    RETURN jsonb_build_object(
        'outcome', 'claimed', 'frames', frames,
        'run', jsonb_build_object('id', r.id, 'node_id', r.node_id, 'batch_index', r.batch_index,
                                  'attempt', r.attempt, 'step', r.step, 'input', r.input,
                                  'task_id', r.task_id, 'parent_id', r.parent_id),
        'parent_input', p.input,
        'execution', jsonb_build_object('id', e.id::text, 'account_id', e.account_id::text,
                                        'flow_id', e.flow_id, 'flow_version_id', e.flow_version_id,
                                        'data', e.data, 'node_outputs', e.node_outputs, 'steps', e.steps,
                                        'progress', e.progress,
                                        -- most accounts have none: then nothing is decrypted to redact
                                        'has_secrets', EXISTS (SELECT 1 FROM accounts_secret s
                                                                WHERE s.account_id = e.account_id)));
END $$;

-- Records the outcome of a running run and moves the execution on, in one transaction. `d` is what the worker
-- decided: {run, kind: done|retry|defer|resume, status, action, output, error, logs, merge, error_doc, next:
-- {node_id, task_id, progress}, end: {status, error, results}, max_steps, step_limit_error, max_bytes, retry:
-- {delay}, defer: {seconds}, part: {base, span}}. Python chooses edges and retries; this only swaps statuses.
-- Outcomes: done (with next_run, join_ready), retry (with retry_run), deferred, too_large (nothing written),
-- ended (the execution is over: the run was canceled), stale (the run is no longer running: nothing written).
CREATE OR REPLACE FUNCTION flowrunner_finish(d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e executions_execution; r executions_noderun; nxt executions_noderun; p executions_noderun;
    events jsonb; frames jsonb; new_data jsonb; size integer; v_output jsonb := d->'output';
    kind text := d->>'kind'; next_id bigint; join_ready boolean := false; outcome text := 'done';
    doc_changed boolean := false;
BEGIN
    SELECT * INTO e FROM executions_execution
     WHERE id = (SELECT execution_id FROM executions_noderun WHERE id = (d->>'run')::bigint) FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'stale'); END IF;
    SELECT * INTO r FROM executions_noderun WHERE id = (d->>'run')::bigint;
    events := flowrunner_log_events(r.node_id, d->'logs');
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
               finished_at = now()
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
               finished_at = now()
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
                events := events || jsonb_build_array(flowrunner_status_event(e));
            END IF;
            doc_changed := true;
        END IF;
    END IF;
    IF doc_changed THEN
        UPDATE executions_execution
           SET data = e.data, node_outputs = e.node_outputs, steps = e.steps, status = e.status,
               error = e.error, finished_at = e.finished_at, results = e.results, progress = e.progress,
               last_event_seq = e.last_event_seq + jsonb_array_length(events)
         WHERE id = e.id;
    ELSIF jsonb_array_length(events) > 0 THEN
        UPDATE executions_execution
           SET progress = e.progress, last_event_seq = e.last_event_seq + jsonb_array_length(events)
         WHERE id = e.id;
    END IF;
    frames := flowrunner_store_events(e.id, e.last_event_seq, events);
    RETURN jsonb_build_object('outcome', outcome, 'frames', frames, 'account_id', e.account_id::text,
                              'next_run', next_id, 'join_ready', join_ready, 'status', e.status,
                              'parent_id', r.parent_id);
END $$;

-- Creates the parts of a running batch node once ({run, parts: [inputs], lanes, item_count}); a second call
-- (a redelivered task) creates nothing. Returns the parts' ids and task ids in batch order.
CREATE OR REPLACE FUNCTION flowrunner_start_batch(d jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    e executions_execution; r executions_noderun; events jsonb; frames jsonb; parts jsonb;
    total integer := jsonb_array_length(d->'parts');
BEGIN
    SELECT * INTO e FROM executions_execution
     WHERE id = (SELECT execution_id FROM executions_noderun WHERE id = (d->>'run')::bigint) FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'stale'); END IF;
    SELECT * INTO r FROM executions_noderun WHERE id = (d->>'run')::bigint;
    IF r.status <> 'running' OR e.status <> 'running' OR r.parts_total IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'stale');
    END IF;
    UPDATE executions_noderun
       SET parts_total = total, parts_done = 0,
           input = jsonb_build_object('batch_count', total, 'item_count', (d->>'item_count')::integer,
                                      'lanes', (d->>'lanes')::integer)
     WHERE id = r.id;
    WITH created AS (
        INSERT INTO executions_noderun (execution_id, node_id, parent_id, parts_done, batch_index, attempt, step,
                                        status, action, input, error, task_id, worker, queued_at)
        SELECT e.id, r.node_id, r.id, 0, (ord - 1)::integer, 1, r.step, 'queued', '', part, '',
               gen_random_uuid()::text, '', now()
          FROM jsonb_array_elements(d->'parts') WITH ORDINALITY AS t(part, ord)
        RETURNING *
    )
    SELECT coalesce(jsonb_agg(jsonb_build_array(c.id, c.task_id) ORDER BY c.batch_index), '[]'::jsonb),
           coalesce(jsonb_agg(flowrunner_node_event(c) ORDER BY c.batch_index), '[]'::jsonb)
      INTO parts, events
      FROM created c;
    UPDATE executions_execution SET last_event_seq = e.last_event_seq + jsonb_array_length(events)
     WHERE id = e.id;
    frames := flowrunner_store_events(e.id, e.last_event_seq, events);
    RETURN jsonb_build_object('outcome', 'started', 'parts', parts, 'frames', frames,
                              'account_id', e.account_id::text);
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS flowrunner_start_batch(jsonb);
DROP FUNCTION IF EXISTS flowrunner_finish(jsonb);
DROP FUNCTION IF EXISTS flowrunner_claim(bigint, text, text);
DROP FUNCTION IF EXISTS flowrunner_cancel_open(bigint, text);
DROP FUNCTION IF EXISTS flowrunner_log_events(text, jsonb);
DROP FUNCTION IF EXISTS flowrunner_store_events(uuid, integer, jsonb);
DROP FUNCTION IF EXISTS flowrunner_status_event(executions_execution);
DROP FUNCTION IF EXISTS flowrunner_node_event(executions_noderun);
DROP FUNCTION IF EXISTS flowrunner_status_body(executions_execution);
DROP FUNCTION IF EXISTS flowrunner_iso(timestamptz);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0002_batch_parents_and_waits"),
        ("flows", "0001_initial"),
        ("accounts", "0001_initial"),
    ]

    operations = [migrations.RunSQL(FUNCTIONS, DROP)]
