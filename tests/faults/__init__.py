"""Fault-injection tests: real processes, broken on purpose (issue "Reliability under faults")."""
