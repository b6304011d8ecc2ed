"""The flow language: YAML parsing, validation and typed spec objects."""
