"""Integrations: the sources that send alerts, each with its own key and resolution behaviour."""
