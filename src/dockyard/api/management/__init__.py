"""The management REST API under /api/v1 (FastAPI: the OpenAPI description comes from the routes)."""
