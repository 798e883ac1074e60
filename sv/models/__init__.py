"""Speaker-embedding models, built by name from the registry (see registry.py)."""
