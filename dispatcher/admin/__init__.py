"""The admin side of the daemon: the HTTP server (health, readiness, metrics) and the metrics."""
