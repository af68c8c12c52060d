"""What every command group shares: the application's hooks, read from the Typer context."""

from __future__ import annotations

import typer

from collector.core.ingest import NO_HOOKS, Hooks


def hooks_of(ctx: typer.Context) -> Hooks:
    """The hooks ``collector.app`` put on the root context (none when a group runs on its own)."""
    obj = ctx.find_object(Hooks)
    return obj if obj is not None else NO_HOOKS
