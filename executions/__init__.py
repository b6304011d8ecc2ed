"""Executions app: Execution, NodeRun, ExecutionEvent; status transitions, events, REST and WebSocket."""
