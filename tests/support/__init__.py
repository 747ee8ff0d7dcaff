"""Real servers for the tests: an OpenLDAP directory (slapd.py) and an OpenID Connect provider (oidc_provider.py)."""
