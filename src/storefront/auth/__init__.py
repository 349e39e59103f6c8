"""Access tokens, signing keys, revocation, throttles and password hashing."""
