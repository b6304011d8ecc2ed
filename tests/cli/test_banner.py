"""`flowrunner serve`'s start-up lines: which database (server and name) it uses, and what runs the work."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from flowrunner.cli import embedded


def test_banner_names_the_configured_database(capsys):
    # given a configured PostgreSQL (the test settings name one)
    database = settings.DATABASES["default"]
    # when the banner is printed
    embedded._banner("127.0.0.1", 8000, embedded=False, worker=False, concurrency=4)
    # then it names the server, the database and the user
    out = capsys.readouterr().out
    assert f"PostgreSQL {database['HOST']}:{database['PORT']}, database {database['NAME']}" in out


def test_banner_of_the_embedded_database_names_the_database(capsys, monkeypatch, tmp_path: Path):
    # given the embedded PostgreSQL
    monkeypatch.setattr(embedded, "embedded_postgres_dir", lambda: tmp_path / "postgres")
    # when the banner is printed
    embedded._banner("127.0.0.1", 8000, embedded=True, worker=True, concurrency=4)
    # then it names the data directory and the database in it
    out = capsys.readouterr().out
    assert (
        f"embedded PostgreSQL in {tmp_path / 'postgres'}, database {settings.DATABASES['default']['NAME']}"
        in out
    )


def test_banner_embedded_without_a_worker_does_not_suggest_flowrunner_worker(capsys, monkeypatch, tmp_path):
    # given embedded mode served with --no-worker, where `flowrunner worker` and `beat` refuse to start
    monkeypatch.setattr(embedded, "embedded_postgres_dir", lambda: tmp_path / "postgres")
    # when the banner is printed
    embedded._banner("127.0.0.1", 8000, embedded=True, worker=False, concurrency=4)
    # then it says the executions stay queued and how to get a worker, not to start one that would refuse
    out = capsys.readouterr().out
    assert "executions stay queued" in out and "drop --no-worker" in out
    assert "flowrunner worker" not in out and "flowrunner beat" not in out
