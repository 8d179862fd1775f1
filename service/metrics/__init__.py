"""Prometheus metrics: every metric in ``instruments``, the app's registry and its scrape-time
collector in ``collector``, ``GET /metrics`` in ``controllers``. Documented in docs/metrics.md."""
