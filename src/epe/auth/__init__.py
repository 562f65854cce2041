"""Users' passwords and bearer tokens (CONTRACT A2)."""
