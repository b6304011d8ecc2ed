"""Unit tests of the node kinds, one file per kind."""
