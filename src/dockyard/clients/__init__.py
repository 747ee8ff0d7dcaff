"""Clients of other services that Dockyard's command line talks to (any OCI registry, not only this one)."""
