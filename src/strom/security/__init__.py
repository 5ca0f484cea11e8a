"""Security: TLS, SASL mechanisms, principals (and, next, authorization and quotas)."""
