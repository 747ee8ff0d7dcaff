"""Scanning in the registry: the scan queue, stored results, re-evaluation and the pull gate."""
