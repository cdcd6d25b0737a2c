"""extract-and-load: each selected table from its datasource, through the writer, into the datalake."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from panorama_elt.datalakes.base import Datalake, PartitionValues
from panorama_elt.datasources import make_datasource
from panorama_elt.datasources.base import Datasource
from panorama_elt.encoding import encode_value
from panorama_elt.errors import PanoramaError, failure_line, is_expected, log_failure
from panorama_elt.file_formats import conversion_workers, writer_class
from panorama_elt.paths import base_values, state_key
from panorama_elt.progress import Progress
from panorama_elt.settings import Settings, TableSettings
from panorama_elt.shards import ShardProcesses, Workers

log = logging.getLogger("panorama_elt")


@dataclass
class TableResult:
    """What one table's run did; one line of the summary and one entry of the results file."""

    table: str
    datasource: str
    datalake_table: str
    mode: str = "full"
    status: str = "ok"
    rows: int = 0
    partitions_written: int = 0
    partitions_registered: int = 0
    partitions_removed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    zero_dates: int = 0
    error: str | None = None
    # What the datasource counted beyond rows (course_structures: courses_read, ...).
    counts: dict[str, int] = field(default_factory=dict)


class Runner:
    """Runs extract-and-load over tables, one at a time; a failing table does not stop the rest."""

    def __init__(self, settings: Settings, datalake: Datalake) -> None:
        self.settings = settings
        self.datalake = datalake
        self._sources: dict[str, Datasource] = {}
        self._workers: Workers | None = None  # while run() runs (see file_formats)

    def source(self, name: str) -> Datasource:
        """The (cached) datasource instance called ``name``."""
        if name not in self._sources:
            self._sources[name] = make_datasource(self.settings.datasource(name))
        return self._sources[name]

    def run(self, tables: Sequence[TableSettings], force: bool) -> list[TableResult]:
        """Extract and load every table; a failure of any kind is that table's, the rest still run.

        Interrupts (SIGTERM's SystemExit, Ctrl-C) are not failures: they stop the run.
        """
        results = []
        workers = conversion_workers(self.datalake.settings)
        with workers if workers is not None else contextlib.nullcontext():
            self._workers = workers
            for table in tables:
                result = TableResult(table.name, table.datasource, table.datalake_table_name)
                started = time.monotonic()
                try:
                    self.load_table(table, force, result)
                except Exception as exc:  # noqa: BLE001 - one table's failure, whatever its kind
                    result.status, result.error = "failed", log_failure(table.name, exc)
                    if not is_expected(exc):
                        # The source's connection is in an unknown state: the next table
                        # reconnects.
                        self._forget_source(table.datasource)
                result.seconds = round(time.monotonic() - started, 3)
                results.append(result)
            self._workers = None
        return results

    def _forget_source(self, name: str) -> None:
        """Close and drop the cached datasource ``name``; the next table opens a new one."""
        source = self._sources.pop(name, None)
        if source is not None:
            try:
                source.close()
            except Exception as exc:  # noqa: BLE001 - already failing; the line says why
                log.warning("%s: closing the datasource failed: %s", name, failure_line(exc))

    def close(self) -> None:
        """Close every datasource connection."""
        for source in self._sources.values():
            source.close()

    def load_table(self, table: TableSettings, force: bool, result: TableResult) -> None:
        """Extract one table into files, upload them, then register partitions and the mark."""
        if not table.fields:
            raise PanoramaError(
                f"{table.name}: no fields in the settings; run set-tables-fields first"
            )
        lake = self.datalake
        mark_key = state_key(table, lake.settings)
        base = base_values(lake.settings)
        levels = len(base) + len(table.partition_fields)
        registered = lake.partitions(table)
        if any(len(p) != levels for p in registered):
            raise PanoramaError(
                f"{table.name}: the catalog holds partitions of another layout (the partition "
                f"fields changed); run create-datalake-tables --tables {table.name} first"
            )
        other_formats = lake.file_formats(table) - {lake.settings.file_format}
        if other_formats:
            raise PanoramaError(
                f"{table.name}: the catalog holds {', '.join(sorted(other_formats))} files and "
                f"datalake.file_format is {lake.settings.file_format}; run "
                f"create-datalake-tables --tables {table.name} first (it replaces this "
                "installation's partitions)"
            )
        # Nothing of this installation registered (first run, after drop-datalake-tables or
        # a layout change): no stored mark describes the datalake, so everything is read.
        force = force or not any(p[: len(base)] == base for p in registered)
        mark = None
        source = self.source(table.datasource)
        if not force and source.uses_mark(table):
            mark = _read_mark(lake.read_state(mark_key))
        extraction = source.extract(table, force=force, mark=mark)
        result.counts = extraction.counts  # the source may add to them while streaming
        # What the source did: a full read (also when it could not resume: no mark yet, or no
        # change tracking), or only what changed.
        result.mode = "full" if extraction.full else "incremental"
        written: list[PartitionValues] = []
        since = f" since {mark}" if mark and table.incremental else ""
        log.info("%s: extracting (%s%s)", table.name, result.mode, since)
        progress = Progress(table.name)
        with tempfile.TemporaryDirectory(prefix="panorama-") as tmp:
            folder = Path(tmp)
            writer_type = writer_class(lake.settings)
            writer = writer_type(table, folder, lake.settings.compression, progress)
            try:
                # Rows come in any partition order: every file is complete at the end of the
                # scans, and the uploads then run side by side where the lake allows.
                with ShardProcesses(
                    extraction.shards, table, folder, extraction.as_bytes, progress, writer_type
                ) as shards:
                    parts = writer.write_scan(extraction.batches, extraction.as_bytes)
                    for others in shards.results():
                        writer.merge(parts, others)
                for key, done in writer.finish(parts, extraction.as_bytes, self._workers):
                    values = base + tuple(encode_value(v) for v in key)
                    lake.upload_async(done.path, lake.key(table, values))
                    written.append(values)
                    result.rows += done.rows
                    result.bytes += done.bytes
                    result.zero_dates += done.zero_dates
                    result.partitions_written += 1
            finally:
                # A source stopped half-way lets go of its connection now, not when collected.
                close = getattr(extraction.batches, "close", None)
                if close is not None:
                    close()
                # Also on failure: no upload may still read the temp dir once it is removed.
                lake.wait_uploads()
        progress.done()
        new = [v for v in written if v not in registered]
        lake.add_partitions(table, new)
        result.partitions_registered = len(new)
        if extraction.full:
            # Only this installation's partitions: other LMSs share the table.
            seen = set(written)
            stale = [p for p in registered if p[: len(base)] == base and p not in seen]
            lake.remove_partitions(table, stale)
            result.partitions_removed = len(stale)
        if extraction.removed and not extraction.full:
            # Partitions the source knows are gone (deleted courses), on a run that is not full.
            gone = {base + tuple(encode_value(v) for v in key) for key in extraction.removed}
            gone -= set(written)
            removed = [p for p in registered if p in gone]
            lake.remove_partitions(table, removed)
            result.partitions_removed += len(removed)
        if extraction.mark is not None:
            lake.write_state(mark_key, json.dumps({"mark": extraction.mark, "table": table.name}))
        log.info(
            "%s: %d rows, %d partitions written, %d registered, %d removed",
            table.name,
            result.rows,
            result.partitions_written,
            result.partitions_registered,
            result.partitions_removed,
        )


def _read_mark(text: str | None) -> str | None:
    if not text:
        return None
    try:
        mark = json.loads(text).get("mark")
    except (ValueError, AttributeError):
        log.warning("ignoring an unreadable high-water mark; falling back to the interval")
        return None
    return mark if isinstance(mark, str) else None


def results_document(results: Sequence[TableResult]) -> list[dict[str, object]]:
    """The per-table entries of the results file."""
    return [asdict(r) for r in results]
