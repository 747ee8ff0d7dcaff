"""Identities, credentials, bearer tokens and the one access policy."""
