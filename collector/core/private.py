"""Files and folders only the collector's own user can read: the data folder, the database, the spool.

The data folder holds the SQLite database (spend, account names, password hashes), the secret
that decrypts stored admin keys, the fingerprint salt and the proxy spool. Another local user
must not read any of it, whatever the process umask is: folders are created ``0700`` and files
``0600``. SQLite creates its ``-wal`` and ``-shm`` files with the database file's permissions
(its unix VFS copies them), so creating the database file ``0600`` first covers all three.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) if needed; a folder created here is ``0700``."""
    path = Path(path)
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode argument is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create an empty ``0600`` file if missing; take group and other permissions off an existing one."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
    else:
        os.close(fd)
        os.chmod(path, FILE_MODE)
    return path


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates files ``0600``."""
    return os.open(path, flags, FILE_MODE)


__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "private_opener"]
