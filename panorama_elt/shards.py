"""Processes that read the other scans of a table (``Extraction.shards``) while the runner reads
the first, each into plain partition files of its own (see writer.CsvWriter.write_scan).

Each is a fresh interpreter, not a fork (the parent may hold threads: DuckDB's, uploads'), with
the parent's ``sys.path`` exactly (so it imports the same panorama_elt and libraries, and the
standard library keeps its place first). It gets its job as a pickle on stdin and sends pickled
messages back on a pipe of its own: rows read so far (for the parent's progress line), then its
result. It dies with its parent: on Linux the kernel sends it SIGTERM when the parent dies
(``PR_SET_PDEATHSIG``; elsewhere a thread watches the parent's pid), and it then closes its
database connection, removes its files and, the parent being gone, the parent's temp folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from panorama_elt.errors import SourceError
from panorama_elt.rows import Shard
from panorama_elt.settings import TableSettings
from panorama_elt.writer import CsvWriter, Partitions

log = logging.getLogger("panorama_elt")

# What the child runs: the parent's sys.path (argv[1]), then main().
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from panorama_elt.shards import main; main()"
)
_PR_SET_PDEATHSIG = 1
_PARENT_WATCH_SECONDS = 0.5
_ORPHAN_WAIT_SECONDS = 2.0
PROGRESS_SECONDS = 0.5


class ShardProcesses:
    """The processes reading ``shards`` of ``table``, each into a folder under ``folder``.

    Started on entry, so they run while the caller reads its own scan; ``results`` waits for
    them. Leaving the block in any other way (an error, SIGTERM) kills them first.
    """

    def __init__(
        self,
        shards: Sequence[Shard],
        table: TableSettings,
        folder: Path,
        as_bytes: bool,
        progress: Callable[[int], None] | None = None,
        writer: type[CsvWriter] = CsvWriter,
    ) -> None:
        self.shards = shards
        self.writer = writer
        self.table = table
        self.folder = folder
        self.as_bytes = as_bytes
        self.progress = progress
        self._running: list[_Child] = []

    def __enter__(self) -> ShardProcesses:
        for n, shard in enumerate(self.shards, start=1):
            folder = self.folder / f"shard-{n}"
            folder.mkdir()
            self._running.append(
                _Child.start(shard, self.table, folder, self.as_bytes, self.progress, self.writer)
            )
        return self

    def results(self) -> list[Partitions]:
        """Every shard's partition files; raise SourceError if one failed."""
        if self._running:
            log.info(
                "%s: waiting for %d other reading process(es)", self.table.name, len(self._running)
            )
        return [child.result(self.table.name) for child in self._running]

    def __exit__(self, *exc: object) -> None:
        for child in self._running:
            child.stop()


class _Child:
    """One shard process and the thread that reads its messages."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: Path) -> None:
        self.process = process
        self.stderr = stderr
        self.final: tuple[str, Any] | None = None
        self.reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        shard: Shard,
        table: TableSettings,
        folder: Path,
        as_bytes: bool,
        progress: Callable[[int], None] | None,
        writer: type[CsvWriter],
    ) -> _Child:
        stderr = folder / "stderr.log"
        with open(stderr, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        child = cls(process, stderr)
        assert process.stdin is not None and process.stdout is not None
        with process.stdin:
            pickle.dump((shard, table, folder, as_bytes, os.getpid(), writer), process.stdin)
        process.stdin = None  # closed
        child.reader = threading.Thread(
            target=child._read, args=(process.stdout, progress), daemon=True
        )
        child.reader.start()
        return child

    def _read(self, stream: IO[bytes], progress: Callable[[int], None] | None) -> None:
        """Take the child's messages until it closes its end."""
        with stream:
            while True:
                try:
                    kind, payload = pickle.load(stream)
                except (EOFError, pickle.UnpicklingError, ValueError, OSError):
                    return
                if kind == "rows":
                    if progress is not None:
                        progress(payload)
                else:
                    self.final = (kind, payload)

    def result(self, table: str) -> Partitions:
        """Wait for the child; its partition files, or SourceError."""
        self.process.wait()
        assert self.reader is not None
        self.reader.join()
        if self.final is None:
            detail = _tail(self.stderr)
            raise SourceError(
                f"{table}: a reading process ended without a result "
                f"(exit code {self.process.returncode}){': ' + detail if detail else ''}"
            )
        kind, payload = self.final
        if kind == "source":
            raise SourceError(payload)
        if kind != "ok":
            # A bug in the reading process: this table fails, the others still run.
            log.debug("reading process traceback:\n%s", payload)
            last = str(payload).strip().splitlines()[-1] if str(payload).strip() else "?"
            raise SourceError(
                f"{table}: a reading process failed: {last} (--debug shows its traceback)"
            )
        parts: Partitions = payload
        return parts

    def stop(self) -> None:
        """Kill the child if it still runs, and wait for it and its reader."""
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join()


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text("utf-8", "replace").strip()[-2000:]
    return ""


class _ParentGone(BaseException):
    """Raised in a shard process by SIGTERM: unwind (closing its connection) and clean up."""


def main() -> None:
    """A shard process: read its scan into plain files, send back what it wrote."""
    out = os.fdopen(os.dup(1), "wb")  # messages: a pipe of our own; stray prints go to stderr
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    signal.signal(signal.SIGTERM, _terminate)
    folder: Path | None = None
    parent = 0
    batches = None
    try:
        shard, table, folder, as_bytes, parent, writer = pickle.load(sys.stdin.buffer)
        _die_with(parent)

        progress = _Progress(out)
        batches = shard()
        parts = writer(table, folder, progress=progress).write_scan(batches, as_bytes)
        progress.flush()
        result: tuple[str, Any] = ("ok", parts)
    except _ParentGone:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up: a second one changes nothing
        if batches is not None:
            with contextlib.suppress(BaseException):
                batches.close()  # the source's clean-up: its connection says goodbye
        _clean_up(folder, parent)
        os._exit(143)
    except SourceError as exc:
        result = ("source", str(exc))
    except Exception:  # noqa: BLE001 - a bug: the parent reports it with this traceback
        result = ("bug", traceback.format_exc())
    with contextlib.suppress(OSError):
        _send(out, result)
        out.close()


class _Progress:
    """Rows read, sent to the parent at most every PROGRESS_SECONDS (each message wakes a
    thread of the parent, which is busy reading its own half)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.rows = 0
        self.last = time.monotonic()

    def __call__(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= PROGRESS_SECONDS:
            self.last = now
            self.flush()

    def flush(self) -> None:
        if self.rows:
            _send(self.out, ("rows", self.rows))
            self.rows = 0


def _send(out: IO[bytes], message: tuple[str, Any]) -> None:
    pickle.dump(message, out)
    out.flush()


def _terminate(signum: int, frame: object) -> None:
    raise _ParentGone


def _die_with(parent: int) -> None:
    """Get SIGTERM when ``parent`` dies (now, if it already has)."""
    if not _parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was set up
        raise _ParentGone


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` when the parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _clean_up(folder: Path | None, parent: int) -> None:
    """Remove this shard's files; and the parent's temp folder when the parent is gone (nobody
    else will: a killed parent runs no clean-up of its own)."""
    if folder is None:
        return
    shutil.rmtree(folder.parent if _orphaned(parent) else folder, ignore_errors=True)


def _orphaned(parent: int) -> bool:
    """Whether the parent process has died, waiting a little for it to finish dying.

    The death signal comes when the thread that started us exits, and we are handed to one of
    the parent's other threads until the last one is gone: only then is our parent pid another.
    A SIGTERM from anyone else (the parent is alive and cleans up itself) waits the full time.
    """
    deadline = time.monotonic() + _ORPHAN_WAIT_SECONDS
    while os.getppid() == parent:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
