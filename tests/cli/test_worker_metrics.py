"""`flowrunner worker --metrics-port N`: the pool processes' metrics directory is set up before Celery starts,
and a worker refuses the option when it cannot honour it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from flowrunner.cli import main as cli
from flowrunner.worker_metrics import MetricsConfigError, MetricsServer, multiproc_dir_problem


@pytest.fixture
def exec_celery(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "_run_celery", lambda subcommand, extra: calls.append((subcommand, extra)) or 0)
    # cmd_worker sets PROMETHEUS_MULTIPROC_DIR in os.environ itself: later tests' subprocesses must not inherit it
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    yield calls
    if saved is None:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved


def test_worker_metrics_port_gets_a_fresh_multiprocess_directory(monkeypatch, exec_celery):
    # Given no PROMETHEUS_MULTIPROC_DIR
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    # When `flowrunner worker --metrics-port 9101` starts
    cli.cmd_worker(["--metrics-port", "9101", "-l", "info"])
    # Then Celery gets the option untouched, and an empty directory of its own is named for the pool processes
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        assert exec_celery == [("worker", ["--metrics-port", "9101", "-l", "info"])]
        assert directory.is_dir() and not any(directory.iterdir())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_worker_metrics_port_empties_a_named_directory_of_old_metric_files(
    monkeypatch, tmp_path, exec_celery
):
    # Given a directory holding a previous run's metric files (their totals would be added in) and another file
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # When the worker starts with --metrics-port=9101
    cli.cmd_worker(["--metrics-port=9101"])
    # Then the old metric files are gone, the rest stays
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.txt"]


def test_worker_without_metrics_port_leaves_the_environment_alone(monkeypatch, exec_celery):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    cli.cmd_worker(["-l", "info"])
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_worker_metrics_refused_when_switched_off_or_without_a_directory(monkeypatch, tmp_path):
    # Given metrics off, then on with no directory, then on with one
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    off = multiproc_dir_problem(SimpleNamespace(FLOWRUNNER_METRICS=False))
    missing = multiproc_dir_problem(SimpleNamespace(FLOWRUNNER_METRICS=True))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    fine = multiproc_dir_problem(SimpleNamespace(FLOWRUNNER_METRICS=True))
    # Then the first two say why, and the worker's start step raises it
    assert "FLOWRUNNER_METRICS is false" in off
    assert "PROMETHEUS_MULTIPROC_DIR" in missing
    assert fine is None
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    step = MetricsServer(SimpleNamespace(steps=[]), metrics_port=0)
    with pytest.raises(MetricsConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        step.start(None)
