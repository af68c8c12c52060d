"""The one ingest path: every source's records are validated, priced once and upserted here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from collector.core.settings import Settings

AfterIngest = Callable[[Engine, Settings], None]


@dataclass(frozen=True)
class Hooks:
    """What a sync or an import runs after it stored rows, handed in by the application.

    Ingest code never imports the features that react to new data (budgets, alerts); the
    application (``collector/app.py``) assembles them and passes them down.
    """

    after_ingest: AfterIngest | None = None

    def ingested(self, engine: Engine, settings: Settings) -> None:
        """Run the after-ingest hook, if any."""
        if self.after_ingest is not None:
            self.after_ingest(engine, settings)


NO_HOOKS = Hooks()
