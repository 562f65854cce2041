"""Users' passwords and bearer tokens (docs/api.md#authentication)."""
