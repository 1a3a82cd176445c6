"""Built-in identity provider (OAuth2 client credentials, RS256 JWTs), token validation and RBAC."""
