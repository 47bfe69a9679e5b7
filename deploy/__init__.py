"""Deployment tools: the replay gate that checks a build against the histories of running incidents."""
