"""Shared-memory rings, binary records, counters and idle strategies; knows nothing of venues or JSON."""
