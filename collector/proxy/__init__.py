"""The optional proxy sidecar: forwards LLM API calls unchanged and records their usage.

See ``app.py`` (ASGI app and routes), ``forward.py`` (the streaming hot path), ``usage.py``
(pure usage extraction), ``spool.py`` (the on-disk journal every event is written to before its
response completes), ``recorder.py`` (the writer moving it into the database), ``rollup.py`` (hourly
rollup into ``usage``), ``tokens.py`` (monitor tokens) and ``metrics.py`` (Prometheus).
"""
