#!/usr/bin/env bash
# Runs the seed's PostgreSQL + WebSocket integration scenarios against real daphne and celery processes:
# loads .env, checks PostgreSQL and Redis, creates the database if needed, runs the simple then the complex
# test, and prints a summary.
set -uo pipefail

cd "$(dirname "$0")/.."
if [[ -f .env ]]; then
  set -a
  # shellcheck disable=SC1091
  source .env
  set +a
  echo "loaded .env"
fi

export FLOWRUNNER_POSTGRES_HOST="${FLOWRUNNER_POSTGRES_HOST:-127.0.0.1}"
export FLOWRUNNER_POSTGRES_PORT="${FLOWRUNNER_POSTGRES_PORT:-5432}"
export FLOWRUNNER_POSTGRES_USER="${FLOWRUNNER_POSTGRES_USER:-postgres}"
export FLOWRUNNER_POSTGRES_DATABASE="${FLOWRUNNER_POSTGRES_DATABASE:-flowrunner_test}"
export FLOWRUNNER_POSTGRES_SSL_MODE="${FLOWRUNNER_POSTGRES_SSL_MODE:-disable}"
export FLOWRUNNER_REDIS_URL="${FLOWRUNNER_REDIS_URL:-redis://127.0.0.1:6379/15}"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"

echo "PostgreSQL: ${FLOWRUNNER_POSTGRES_USER}@${FLOWRUNNER_POSTGRES_HOST}:${FLOWRUNNER_POSTGRES_PORT}/${FLOWRUNNER_POSTGRES_DATABASE} (sslmode=${FLOWRUNNER_POSTGRES_SSL_MODE})"
export PGPASSWORD="${FLOWRUNNER_POSTGRES_PASSWORD:-}"
psql_args=(-h "$FLOWRUNNER_POSTGRES_HOST" -p "$FLOWRUNNER_POSTGRES_PORT" -U "$FLOWRUNNER_POSTGRES_USER")
if ! psql "${psql_args[@]}" -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
  echo "FAIL: cannot connect to PostgreSQL (is it running? are the FLOWRUNNER_POSTGRES_* values right?)" >&2
  exit 1
fi
exists=$(psql "${psql_args[@]}" -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '${FLOWRUNNER_POSTGRES_DATABASE}'")
if [[ "$exists" != "1" ]]; then
  echo "creating database ${FLOWRUNNER_POSTGRES_DATABASE}"
  psql "${psql_args[@]}" -d postgres -c "CREATE DATABASE \"${FLOWRUNNER_POSTGRES_DATABASE}\"" >/dev/null
fi
if ! "$PYTHON" -c "import redis, os; redis.Redis.from_url(os.environ['FLOWRUNNER_REDIS_URL']).ping()" 2>/dev/null; then
  echo "FAIL: cannot reach Redis at ${FLOWRUNNER_REDIS_URL}" >&2
  exit 1
fi

TEST=tests/integration/test_websocket_postgres_integration.py
declare -A results
run() {
  local name=$1 selector=$2
  echo
  echo "=== ${name} ==="
  if "$PYTHON" -m pytest "${TEST}::${selector}" -v -s -p no:cacheprovider; then
    results[$name]=PASS
  else
    results[$name]=FAIL
  fi
}
run "Simple branching" test_simple_branching_takes_the_branch_its_data_calls_for
run "Complex flow" test_complex_flow_three_concurrent_executions_complete_with_live_updates

echo
echo "=== Summary ==="
status=0
for name in "Simple branching" "Complex flow"; do
  echo "${results[$name]}  ${name}"
  [[ "${results[$name]}" == PASS ]] || status=1
done
exit $status
