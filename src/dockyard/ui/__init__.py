"""The web UI: server-rendered pages over the same services and checks as the management API."""
