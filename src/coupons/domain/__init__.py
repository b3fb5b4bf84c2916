"""Business rules: no FastAPI, no SQL."""
