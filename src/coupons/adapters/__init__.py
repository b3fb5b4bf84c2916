"""Database adapters: the only place that knows SQL."""
