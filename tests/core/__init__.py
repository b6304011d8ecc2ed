"""Tests of the bottom floor (core/)."""
