"""Processes that read the other scans of a table (``Extraction.shards``) while the runner reads
the first, each into plain partition files of its own (see writer.CsvWriter.write_scan); and,
on the same terms, long-lived ``Workers`` that run other jobs of a run outside the runner's
process (the Parquet conversion, parquet_writer).

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
import importlib
import json
import logging
import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from panorama_elt.errors import DatalakeError, SourceError
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
_WORKER_EXIT_SECONDS = 5.0


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
            # Orphaned, it removes the table's temp folder: the dead parent's.
            child = _Child.start(folder, ReadScan.doing, self.progress, orphan_folder=self.folder)
            child.send(ReadScan(shard, self.table, folder, self.as_bytes, self.writer))
            child.end_input()
            self._running.append(child)
        return self

    def results(self) -> list[Partitions]:
        """Every shard's partition files; raise SourceError if one failed."""
        if self._running:
            log.info(
                "%s: waiting for %d other reading process(es)", self.table.name, len(self._running)
            )
        results = [child.result(self.table.name) for child in self._running]
        for child in self._running:
            child.process.wait()
        return results

    def __exit__(self, *exc: object) -> None:
        for child in self._running:
            child.stop()


class _Child:
    """One child process and the thread that reads its messages.

    It first gets ``(parent pid, modules to import, folder to remove if orphaned)`` (see
    main), then jobs until its stdin closes; each job's result comes back in order.
    """

    def __init__(self, process: subprocess.Popen[bytes], stderr: Path, doing: str) -> None:
        self.process = process
        self.stderr = stderr
        self.doing = doing
        self.finals: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.reader: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        folder: Path,
        doing: str,
        progress: Callable[[int], None] | None = None,
        preload: Sequence[str] = (),
        log_name: str = "stderr.log",
        orphan_folder: Path | None = None,
    ) -> _Child:
        stderr = folder / log_name
        with open(stderr, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        child = cls(process, stderr, doing)
        assert process.stdout is not None
        child.send((os.getpid(), list(preload), orphan_folder or folder))
        child.reader = threading.Thread(
            target=child._read, args=(process.stdout, progress), daemon=True
        )
        child.reader.start()
        return child

    def send(self, message: object) -> None:
        """A job (or the first message) to the child."""
        assert self.process.stdin is not None
        pickle.dump(message, self.process.stdin)
        self.process.stdin.flush()

    def end_input(self) -> None:
        """No more jobs: the child exits once it has sent its last result."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()

    def _read(self, stream: IO[bytes], progress: Callable[[int], None] | None) -> None:
        """Take the child's messages until it closes its end."""
        with stream:
            while True:
                try:
                    kind, payload = pickle.load(stream)
                except (EOFError, pickle.UnpicklingError, ValueError, OSError):
                    self.finals.put(None)
                    return
                if kind == "rows":
                    if progress is not None:
                        progress(payload)
                else:
                    self.finals.put((kind, payload))

    def result(self, table: str) -> Any:
        """Wait for the next job's result; what it returned, or the error it reported."""
        final = self.finals.get()
        if final is None:
            self.finals.put(None)  # every later call finds the child gone too
            self.process.wait()
            detail = _tail(self.stderr)
            raise SourceError(
                f"{table}: a {self.doing} process ended without a result "
                f"(exit code {self.process.returncode}){': ' + detail if detail else ''}"
            )
        kind, payload = final
        if kind == "source":
            raise SourceError(payload)
        if kind == "datalake":
            raise DatalakeError(payload)
        if kind != "ok":
            # A bug in the child: this table fails, the others still run.
            log.debug("%s process traceback:\n%s", self.doing, payload)
            last = str(payload).strip().splitlines()[-1] if str(payload).strip() else "?"
            raise SourceError(
                f"{table}: a {self.doing} process failed: {last} (--debug shows its traceback)"
            )
        return payload

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Kill the child if it still runs, and wait for it and its reader."""
        self.end_input()
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join()


class Workers:
    """``count`` long-lived child processes (started on entry, with a temp folder of their
    own) that run jobs for a whole run, one job at a time each: their start-up is paid once,
    not per table. Leaving the block ends them."""

    def __init__(self, count: int, doing: str, preload: Sequence[str] = ()) -> None:
        self.count = count
        self.doing = doing
        self.preload = tuple(preload)
        self._folder: Path | None = None
        self._children: list[_Child | None] = [None] * count

    def __enter__(self) -> Workers:
        self._folder = Path(tempfile.mkdtemp(prefix="panorama-workers-"))
        for n in range(self.count):
            self._child(n)
        return self

    def _child(self, n: int) -> _Child:
        """Worker ``n``, started anew if it is not running (it died with an earlier job)."""
        child = self._children[n]
        if child is None or not child.alive():
            if child is not None:
                child.stop()
            assert self._folder is not None, "Workers used outside its with block"
            # The folder is the workers' own: one whose parent died removes it.
            child = self._children[n] = _Child.start(
                self._folder, self.doing, preload=self.preload, log_name=f"worker-{n}.log"
            )
        return child

    def run(self, jobs: Sequence[Job], table: str) -> list[Any]:
        """Run each job in a worker of its own (at most ``count`` jobs); their results, in
        order. The first error is raised once every job has ended. Interrupted (Ctrl-C,
        SIGTERM) or failing to hand a job over, it kills every worker whose job has not
        ended: none goes on writing, and none has a result left over for the next call."""
        if len(jobs) > self.count:
            raise ValueError(f"{len(jobs)} jobs for {self.count} workers")
        children = [self._child(n) for n in range(len(jobs))]
        busy: list[_Child] = []
        try:
            for child, job in zip(children, jobs, strict=True):
                busy.append(child)
                child.send(job)
            results: list[Any] = []
            error: Exception | None = None
            for child in children:
                try:
                    results.append(child.result(table))
                except Exception as exc:  # noqa: BLE001 - raised below, once all have ended
                    error = error or exc
                busy.remove(child)
        except BaseException:
            for child in busy:
                child.stop()  # the next call starts it anew
            raise
        if error is not None:
            raise error
        return results

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        for child in self._children:
            if child is not None:
                child.end_input()
        for child in self._children:
            if child is not None:
                if kind is None:  # a normal end: idle workers exit as their input closes
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.process.wait(timeout=_WORKER_EXIT_SECONDS)
                child.stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text("utf-8", "replace").strip()[-2000:]
    return ""


class _ParentGone(BaseException):
    """Raised in a child process by SIGTERM: unwind (closing its connection) and clean up."""


class Job:
    """Work for a child process: picklable, called there with a progress callback (rows)."""

    doing = "child"  # what the process does, for messages: "a <doing> process failed"

    def __call__(self, progress: Callable[[int], None]) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the job holds (the child is stopping half-way)."""

    def clean_up(self, orphaned: bool) -> None:
        """Remove the job's files (the child is stopping half-way); ``orphaned``: the parent
        died, and nobody else will remove its temp folder."""


class ReadScan(Job):
    """Read one scan of a table into plain partition files of ``folder``."""

    doing = "reading"

    def __init__(
        self,
        shard: Shard,
        table: TableSettings,
        folder: Path,
        as_bytes: bool,
        writer: type[CsvWriter],
    ) -> None:
        self.shard = shard
        self.table = table
        self.folder = folder
        self.as_bytes = as_bytes
        self.writer = writer
        self.batches: Any = None

    def __call__(self, progress: Callable[[int], None]) -> Partitions:
        self.batches = self.shard()
        return self.writer(self.table, self.folder, progress=progress).write_scan(
            self.batches, self.as_bytes
        )

    def close(self) -> None:
        if self.batches is not None:
            self.batches.close()  # the source's clean-up: its connection says goodbye

    def clean_up(self, orphaned: bool) -> None:
        # Our folder is in the parent's temp folder for the table (removed whole if orphaned).
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    """A child process: run its jobs, send back what each returned.

    Its first message is ``(parent pid, modules to import, folder to remove if the parent
    dies)``: a killed parent runs no clean-up of its own.
    """
    out = os.fdopen(os.dup(1), "wb")  # messages: a pipe of our own; stray prints go to stderr
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    signal.signal(signal.SIGTERM, _terminate)
    parent = 0
    orphan_folder: Path | None = None
    job: Job | None = None
    try:
        parent, preload, orphan_folder = pickle.load(sys.stdin.buffer)
        _die_with(parent)
        for module in preload:
            importlib.import_module(module)
        progress = _Progress(out)
        while True:
            try:
                job = pickle.load(sys.stdin.buffer)
            except EOFError:
                break
            assert job is not None
            result: tuple[str, Any]
            try:
                value = job(progress)
                progress.flush()
                result = ("ok", value)
            except SourceError as exc:
                result = ("source", str(exc))
            except DatalakeError as exc:
                result = ("datalake", str(exc))
            except Exception:  # noqa: BLE001 - a bug: the parent reports it with this traceback
                result = ("bug", traceback.format_exc())
            job = None
            _send(out, result)
        # No more jobs: the parent closed our input, or died (the death signal may come later).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if parent and os.getppid() != parent and orphan_folder is not None:
            shutil.rmtree(orphan_folder, ignore_errors=True)
    except _ParentGone:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up: a second one changes nothing
        orphaned = _orphaned(parent) if parent else False
        if job is not None:
            with contextlib.suppress(BaseException):
                job.close()
            job.clean_up(orphaned)
        if orphaned and orphan_folder is not None:
            shutil.rmtree(orphan_folder, ignore_errors=True)
        os._exit(143)
    except (EOFError, OSError):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The parent went away before sending a job, or stopped reading.
    with contextlib.suppress(OSError):
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
