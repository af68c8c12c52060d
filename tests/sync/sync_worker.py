"""A pre-loaded parent that forks one real sync process per command (for the SIGKILL resume test).

Importing the CLI takes ~2 s on the shared CI machine; forking from a single-threaded parent
that already imported it makes each killed sync a real, separate OS process that starts in
milliseconds. Protocol on stdin/stdout: one line of CLI arguments in; the child's pid out, then
``exit <wait status>`` when the child is gone.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import collector.sync.engine  # noqa: F401  (pre-load before forking)
from collector.app import app
from collector.core.model_ids import canonical_model
from collector.core.pricing import unit_prices


def main() -> None:
    """Serve commands until stdin closes."""
    unit_prices("openai", "gpt-4o-mini", datetime.now(UTC).date())  # loads the price snapshot once, pre-fork
    canonical_model("openai", "gpt-4o-mini-2024-07-18")
    for line in sys.stdin:
        args = line.split()
        pid = os.fork()
        if pid == 0:  # the sync process; its output must not mix with the protocol
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = 0
            try:
                app(args, standalone_mode=False)
            except BaseException:
                code = 1
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    main()
