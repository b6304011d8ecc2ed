"""Workers app: Celery tasks, the graph engine, batch chords, the script sandbox, the reaper."""
