"""`make run`'s supervisor and the local SMTP catcher: tools for a developer's machine, not part of Vigil's core."""
