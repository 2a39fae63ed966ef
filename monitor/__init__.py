"""Monitoring HTTP service: health, Prometheus metrics, strategy and order statistics, alerts. Never writes to rings."""
