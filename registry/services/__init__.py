"""Use cases. Each takes the session first and the rest keyword-only, and never commits."""
