"""The RCA stage over HTTP: postmortems, charts, attachments, close, and the evidence queries."""
