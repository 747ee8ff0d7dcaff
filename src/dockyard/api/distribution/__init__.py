"""The OCI Distribution / Docker Registry v2 API under /v2/."""
