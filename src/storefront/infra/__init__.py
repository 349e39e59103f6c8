"""Process clients: Redis, mail, the outbound HTTP client, dependency status."""
