"""Fault injection scenarios: see faults/README.md."""
