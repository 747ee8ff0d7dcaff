"""The thin HTTP layer: translates requests to service calls and domain errors to responses."""
