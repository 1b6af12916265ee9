"""Chaos tests: failure injection against a real cluster, and their write-history checker."""
