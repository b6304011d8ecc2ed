"""One module per benchmark scenario; each returns scenario result objects (bench.stats.scenario_result)."""
