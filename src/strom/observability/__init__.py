"""Operations: the broker's Prometheus metrics, its HTTP endpoints (/metrics, /healthz,
/readyz) and the event-loop lag probe (docs/metrics.md)."""
