"""Multi-host tests: worker hosts as Linux network namespaces."""
