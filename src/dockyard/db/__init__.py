"""Metadata database: the source of truth for everything but blob bytes."""
