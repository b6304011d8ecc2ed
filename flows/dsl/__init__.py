"""The flow language: YAML parsing (parser, yamltree), validation against the node kinds, typed spec objects."""
