"""Job functions of the book's experiment grids (module-level, so a Ray worker can import them by name)."""
