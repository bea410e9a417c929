"""Domain types and errors: pydantic models with no I/O and no imports from other layers."""
