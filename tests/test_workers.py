"""Worker processes (shards.Workers): the Parquet conversion of a run, outside the runner's
process. Real child processes; jobs are defined here (the workers import this module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from panorama_elt import parquet_writer as parquet_module
from panorama_elt.errors import DatalakeError, SourceError, failure_line
from panorama_elt.parquet_writer import ParquetWriter, conversion_workers
from panorama_elt.shards import Job, Workers
from tests.conftest import ROOT
from tests.test_parquet import expected_record, two_scans, typed_row, typed_table


class Pid(Job):
    doing = "test"

    def __call__(self, progress: Callable[[int], None]) -> int:
        return os.getpid()


class Dies(Job):
    doing = "test"

    def __call__(self, progress: Callable[[int], None]) -> None:
        print("about to die", file=sys.stderr)
        os._exit(3)


class Stalls(Job):
    """Writes ``marker``, then goes on working (writing) until it is stopped."""

    doing = "test"

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, progress: Callable[[int], None]) -> None:
        self.marker.write_text(str(os.getpid()))
        while True:
            time.sleep(0.01)


class Fails(Job):
    doing = "test"

    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __call__(self, progress: Callable[[int], None]) -> None:
        raise self.error("tbl: what went wrong")


def test_workers_run_jobs_side_by_side_and_last_the_whole_run() -> None:
    with Workers(2, "test") as workers:
        first = workers.run([Pid(), Pid()], "tbl")
        second = workers.run([Pid(), Pid()], "tbl")
        assert len(set(first)) == 2 and os.getpid() not in first
        assert second == first  # the same processes: started once
        pids = first
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), "a worker outlived its block"


def test_a_worker_that_dies_fails_its_job_in_one_line_and_is_replaced() -> None:
    with Workers(2, "test") as workers:
        with pytest.raises(SourceError) as failed:
            workers.run([Pid(), Dies()], "tbl")
        line = failure_line(failed.value)
        assert line.startswith("tbl: a test process ended without a result (exit code 3)")
        assert "about to die" in line and "\n" not in line
        again = workers.run([Pid(), Pid()], "tbl")
        assert len(set(again)) == 2


@pytest.mark.parametrize("error", [SourceError, DatalakeError])
def test_a_jobs_error_reaches_the_parent_as_itself(error: type[Exception]) -> None:
    with Workers(1, "test") as workers:
        with pytest.raises(error, match="^tbl: what went wrong$"):
            workers.run([Fails(error)], "tbl")
        (pid,) = workers.run([Pid()], "tbl")  # the worker goes on
        assert pid != os.getpid()


def test_parquet_files_converted_in_workers_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two scans' files of each partition, in several groups shared among the workers."""
    monkeypatch.setattr(parquet_module, "GROUP_BYTES", 40_000)
    writer, parts = two_scans(tmp_path, 1400)
    with conversion_workers() as workers:
        groups = list(parquet_module._groups(list(parts.values())))
        assert len(parquet_module._shares(groups, workers.count)) == workers.count >= 2
        files = writer.finish(parts, True, workers)
    assert sorted(key for key, _ in files) == [(f"course-{n}",) for n in range(7)]
    for (course,), written in files:
        ids = [i for i in range(1400) if f"course-{i % 7}" == course]
        got = sorted(pq.read_table(written.path).to_pylist(), key=lambda r: r["id"])
        assert got == [expected_record(i) for i in ids]
        assert written.rows == len(ids)
    assert sorted(tmp_path.rglob("*.*")) == sorted(w.path for _, w in files)


def test_a_bad_value_found_in_a_worker_names_its_column(tmp_path: Path) -> None:
    table = typed_table(partitioned=False)
    course, _, *rest = typed_row(1)
    writer = ParquetWriter(table, tmp_path)
    parts = writer.write_scan(iter([[[b"12x", course, *rest]]]), True)
    with (
        conversion_workers() as workers,
        pytest.raises(SourceError, match=r"^typed: column id \(int\(11\)\) holds a value that"),
    ):
        writer.finish(parts, True, workers)


def test_workers_of_a_killed_parent_stop_and_remove_their_folder(tmp_path: Path) -> None:
    """SIGKILL to the process that owns the workers (as the out-of-memory killer sends): they
    get SIGTERM from the kernel, exit, and leave nothing in the run's TMPDIR."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    script = textwrap.dedent(
        """
        import sys, time
        from panorama_elt.shards import Workers
        from tests.test_workers import Pid
        with Workers(2, "test") as workers:
            print(*workers.run([Pid(), Pid()], "tbl"), flush=True)
            time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(private_tmp), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2
        assert [p.name for p in private_tmp.iterdir() if p.name.startswith("panorama-workers")]
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            any(Path(f"/proc/{pid}").exists() for pid in pids) or any(private_tmp.iterdir())
        ):
            time.sleep(0.05)
        assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "a worker lives on"
        assert list(private_tmp.iterdir()) == [], "the workers left files behind"
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.communicate()


def test_an_interrupt_while_jobs_run_stops_their_workers_and_leaves_no_result_behind(
    tmp_path: Path,
) -> None:
    """Ctrl-C (or SIGTERM's exit) while workers convert: the interrupt reaches the caller, the
    busy workers are killed (none writes on into a folder being removed), and the next call
    gets its own results, not the interrupted ones."""
    marker = tmp_path / "started"
    with Workers(2, "test") as workers:

        def interrupt_once_started() -> None:
            deadline = time.monotonic() + 30
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_started, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            workers.run([Pid(), Stalls(marker)], "tbl")
        stalled = int(marker.read_text())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{stalled}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not Path(f"/proc/{stalled}").exists(), "the busy worker still runs"
        again = workers.run([Pid(), Pid()], "tbl")
        assert len(set(again)) == 2 and stalled not in again
