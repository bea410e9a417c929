"""The Emporix query language (q) and its translation into store filters."""
