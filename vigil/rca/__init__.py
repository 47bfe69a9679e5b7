"""The RCA stage's core: evidence, charts, figures, the postmortem document and the artifact store (no Temporal)."""
