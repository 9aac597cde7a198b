"""API keys, scopes, rate limits and the audit trail (docs/security.md)."""
