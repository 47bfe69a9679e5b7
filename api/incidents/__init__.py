"""Incidents: list, read, acknowledge, resolve."""
