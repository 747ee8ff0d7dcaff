"""Domain services: plain Python objects over db/ and storage/, with no knowledge of HTTP."""
