"""Node kinds: one module per kind, each registering itself in `registry`."""
