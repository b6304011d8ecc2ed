"""A finish that ends its execution also says what follows the end (a completion callback to send, executions
of the account waiting for admission), so the worker needs no query of its own after the commit."""

import importlib

from django.db import migrations

DECLARE = "    doc_changed boolean := false; next_context jsonb;\n"
ENDS = "                e.status := d->'end'->>'status';\n"
RETURNS = "                              'parent_id', r.parent_id, 'next_context', next_context);\n"
# What follows the end is read under the account's admission lock (executions.admission.LOCK_NAMESPACE, "ADMT",
# held to the commit): a new run that counted this execution as running, and so waits, has committed by then,
# and the EXISTS below sees it; one that decides later sees this execution ended.
ENDED = """                ended := true;
                PERFORM pg_advisory_xact_lock(1094995284, hashtext(e.account_id::text));
"""
AFTER_END = """                              'parent_id', r.parent_id, 'next_context', next_context,
                              'after_end', CASE WHEN ended THEN jsonb_build_object(
                                  'callback', e.callback_url <> '',
                                  'waiting', EXISTS (SELECT 1 FROM executions_execution w
                                                      WHERE w.account_id = e.account_id AND w.status = 'queued'
                                                        AND w.waiting_reason <> '')) END);
"""


def _finishes() -> tuple[str, str]:
    previous = importlib.import_module("executions.migrations.0009_finish_claims_batch_parts")._finishes()[1]
    assert previous.count(DECLARE) == 1 and previous.count(ENDS) == 1 and previous.count(RETURNS) == 1
    return previous, (
        previous.replace(DECLARE, DECLARE + "    ended boolean := false;\n")
        .replace(ENDS, ENDED + ENDS)
        .replace(RETURNS, AFTER_END)
    )


class Migration(migrations.Migration):
    dependencies = [("executions", "0010_start_function")]

    operations = [migrations.RunSQL(_finishes()[1], _finishes()[0])]
