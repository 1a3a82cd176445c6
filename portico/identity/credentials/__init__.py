"""Credential manager: authorization providers and their authorizations (connections) that obtain
OAuth 2.0 tokens from identity providers, for the gateway's `get-authorization-context` policy.

- `providers.py`: what a provider and an authorization must configure; the endpoints they name.
- `oauth.py`: token requests (client credentials, authorization code, refresh) over HTTP.
- `tokens.py`: the sealed tokens of authorizations (`credential_tokens`), outside the configuration.
- `consent.py`: login links and the redirect that completes an authorization-code consent.
- `connect.py`: obtaining a token for an authorization and recording its status.
- `runtime.py`: tokens for the gateway, cached per worker and refreshed before they expire.
"""
