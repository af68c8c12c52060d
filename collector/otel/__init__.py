"""The OpenTelemetry GenAI receiver: OTLP/HTTP spans and token metrics as a fourth source (``otel``).

See ``receiver.py`` (the OTLP/HTTP routes), ``decode.py`` (pure decoding: what is read, what is
dropped), ``store.py`` (per-call pricing, exactly-once inserts, cumulative series), ``rollup.py``
(hourly rollup into ``usage`` and the span/metric rule) and ``models.py`` (tables). It imports
nothing but ``collector.core``: the application hands it a database.
"""
