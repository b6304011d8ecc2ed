"""Status events written by the engine's functions carry `waiting_reason`, as the ones written from Python do."""

from django.db import migrations

BODY = r"""
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
        'created_at', flowrunner_iso(e.created_at),
        -- only a queued execution waits; the reason stays on the row after it is canceled, not in its status
        'waiting_reason', CASE WHEN e.status = 'queued' THEN nullif(e.waiting_reason, '') END));
END $$;
"""

PREVIOUS = r"""
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
"""


class Migration(migrations.Migration):
    dependencies = [("executions", "0005_admission_and_callbacks")]

    operations = [migrations.RunSQL(BODY, PREVIOUS)]
