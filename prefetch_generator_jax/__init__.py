"""The JAX device stage for prefetch_generator (built in its own issue)."""
