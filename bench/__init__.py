"""FlowRunner benchmarks against raw Celery on the same broker, workers and machine (see bench/README.md)."""
