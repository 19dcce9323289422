"""Talking to a Coflux server: wire schemas, the HTTP client, and the server itself."""
