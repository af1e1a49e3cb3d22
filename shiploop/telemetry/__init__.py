"""Metrics out: the daemon's own /metrics, Prometheus targets (file_sd), scrape config, a supervised Prometheus."""
