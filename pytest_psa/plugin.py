"""pytest entry point (placeholder while the foundation is written)."""
