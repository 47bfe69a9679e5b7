"""Vigil shared core: settings, contracts, state machine, DB models, logging."""
