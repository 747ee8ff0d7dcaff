"""Trust: signatures of stored images, verified against each project's trust material."""
