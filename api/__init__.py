"""FastAPI layer: routers stay thin; they start, signal, update and query workflows."""
