"""`vigil`, the command-line client of Vigil's HTTP API (it imports nothing from the server packages)."""
