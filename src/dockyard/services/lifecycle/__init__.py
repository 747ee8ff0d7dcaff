"""Image lifecycle: garbage collection, tag immutability, retention, quotas, storage scrub and reconcile."""
