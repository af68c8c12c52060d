"""Core of the LLM usage and cost collector: schema, store, settings, sync, CLI."""

__all__ = ["__version__"]

__version__ = "0.1.0"
