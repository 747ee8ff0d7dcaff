"""Where the vulnerability database comes from by default (kept free of heavy imports: settings read it)."""

from __future__ import annotations

# osv.dev publishes one zip of all records per ecosystem at this address.
OSV_DEV = "https://osv-vulnerabilities.storage.googleapis.com/{ecosystem}/all.zip"
DEFAULT_ECOSYSTEMS = ("Debian", "Alpine", "Ubuntu", "Rocky Linux", "AlmaLinux", "PyPI", "npm", "Go", "Maven",
                      "RubyGems", "crates.io")  # fmt: skip
DEFAULT_SOURCES = tuple(OSV_DEV.format(ecosystem=e.replace(" ", "%20")) for e in DEFAULT_ECOSYSTEMS)
