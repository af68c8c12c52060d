"""The ``llm-usage`` command groups, one module each; ``collector/app.py`` assembles them."""
