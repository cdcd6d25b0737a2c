"""One run at a time per settings file: cron overlaps exit at once.

Every command that writes to the datalake takes it: extract-and-load and the catalog commands
(create-datalake-tables may drop a changed layout and its files while a run registers them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from panorama_elt.errors import LockedError, PanoramaError


def lock_path(settings_file: Path) -> Path:
    """The lock file of a settings file.

    Beside the settings file when that folder is writable, so runs in two containers that
    mount the same /config see each other; else in the temp dir (a read-only mount).
    """
    settings_file = settings_file.resolve()
    beside = settings_file.with_name(f".{settings_file.name}.lock")
    if os.access(settings_file.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(settings_file).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"panorama-elt-{digest}.lock"


@contextlib.contextmanager
def run_lock(settings_file: Path, command: str) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock for ``command``; raise LockedError when another has it.

    The lock file names the holder (``<pid> <command>``) for the one line the other one prints.
    flock is released by the kernel when the process dies, so a crashed run never leaves a
    stale lock behind.
    """
    path = lock_path(settings_file)
    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the duration of the run
    except OSError as exc:
        raise PanoramaError(
            f"cannot open the run lock {path}: {exc.strerror} (was it created by another user?)"
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, holder = handle.read().strip().partition(" ")
            raise LockedError(
                f"another {holder or 'run'} with {settings_file} is still running "
                f"(pid {pid or 'unknown'}); {command} exits without touching anything"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {command}")
        handle.flush()
        yield
    finally:
        handle.close()
