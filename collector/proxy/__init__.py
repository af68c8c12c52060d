"""The optional proxy sidecar: forwards LLM API calls unchanged and records their usage.

See ``app.py`` (ASGI app and routes), ``forward.py`` (the streaming hot path), ``usage.py``
(pure usage extraction), ``recorder.py`` (queue, batch writer, spool), ``rollup.py`` (hourly
rollup into ``usage``), ``tokens.py`` (monitor tokens) and ``metrics.py`` (Prometheus).
"""
