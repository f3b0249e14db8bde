"""multispot provider for vertex (placeholder until the adapter lands)."""
