"""Deterministic orchestration only: state, timers, signals, updates and queries."""
