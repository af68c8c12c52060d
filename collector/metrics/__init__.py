"""Prometheus spend metrics over the usage table (``llm-usage metrics``, and optionally the sidecar).

``spend.py`` builds the gauges through the query layer; ``server.py`` is the small HTTP server.
"""
