"""Flows app: stored flows, their versions, the flow language (dsl/) and node kinds (nodes/)."""
