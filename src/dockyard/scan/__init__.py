"""Image scanning: what is inside an image (inventory), which advisories apply (matching), reports."""
