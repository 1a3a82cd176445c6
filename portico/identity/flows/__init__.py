"""Delegated (person) sign-in flows of the identity provider, as Entra serves them to MSAL."""
