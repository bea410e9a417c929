"""Use cases: one function each, owning its transaction. Transports call these only."""
