"""Escalation policies at run time: route and freeze a policy, resolve its targets, preview its timeline."""
