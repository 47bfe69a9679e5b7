"""Alerts: every alert Vigil accepted, with its counts and first/last seen."""
