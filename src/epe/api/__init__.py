"""The HTTP surface: routers by resource, one error mapping, auth dependencies."""
