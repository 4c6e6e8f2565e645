"""Monitoring assets (Prometheus, Grafana, compose) and the traffic simulator."""
