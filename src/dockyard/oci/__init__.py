"""Pure OCI grammar and document handling: digests, names, media types, manifests. No I/O."""
