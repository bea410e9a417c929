"""Access tokens: verification (HS256 secret, RS256/ES256 from a JWKS) and development tokens."""
