"""Metrics for Prometheus: the database's gauges read at scrape time, and what this process did.

The engine, the Violet client and the webhook receiver report to `orchestrator.observe`, which
imports nothing and costs one check per event until a sink is installed. `prometheus_client`
loads only in `collector` and `serve`, which run when metrics are served (`orchestrator recover
--metrics-port`, the console's `/metrics`, or a host's own `metrics_route`).
"""
