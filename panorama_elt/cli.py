"""Command-line interface; every PanoramaError becomes one line and an exit code here."""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from panorama_elt.__about__ import __version__
from panorama_elt.errors import PanoramaError, UsageError, failure_line, wants_traceback
from panorama_elt.lock import run_lock
from panorama_elt.secrets import SecretFilter, install_secret_filter
from panorama_elt.settings import DatasourceSettings, Settings, TableSettings, load_settings

log = logging.getLogger("panorama_elt")
DEFAULT_SETTINGS = "panorama_settings.yaml"


class Context:
    """What the group options set up for the commands."""

    def __init__(self, settings_file: str, debug: bool) -> None:
        self.settings_file = settings_file
        self.debug = debug
        self._settings: Settings | None = None
        self.secrets = SecretFilter()

    @property
    def settings(self) -> Settings:
        """The validated settings (loaded on first use)."""
        if self._settings is None:
            self._settings = load_settings(self.settings_file)
            self.secrets.add_from_settings(self._settings)
        return self._settings


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn any failure into one red line and an exit code.

    A PanoramaError exits with its code (--debug adds the traceback); anything else is a bug:
    its traceback is logged (through the secret filter, like every line) and the exit code is 1.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        click_ctx = click.get_current_context()
        ctx = click_ctx.find_object(Context)
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own exits: usage errors, --help, Ctrl-C at a prompt
        except Exception as exc:  # noqa: BLE001 - every failure gets one masked line
            line = _failure(ctx, exc, click_ctx.info_name or "panorama")
            click.secho(f"Error: {line}", fg="red", err=True)
            sys.exit(exc.exit_code if isinstance(exc, PanoramaError) else 1)

    return wrapper


def _failure(ctx: Context | None, exc: Exception, what: str) -> str:
    """A failure's one line, secrets masked; its traceback is logged before it when due."""
    if wants_traceback(exc):
        log.error("%s: traceback", what, exc_info=exc)
    line = failure_line(exc)
    return ctx.secrets.scrub(line) if ctx else line


def selection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--all / --datasource / --tables, and the rule that exactly one way of choosing is used."""

    @click.option("--all", "all_tables", is_flag=True, help="Every table of every datasource.")
    @click.option("--datasource", help="Every table of this datasource.")
    @click.option("--tables", "-t", "tables", help="Comma-separated table names.")
    @functools.wraps(command)
    def wrapper(
        *args: Any, all_tables: bool, datasource: str | None, tables: str | None, **kwargs: Any
    ) -> Any:
        if all_tables and (datasource or tables):
            raise click.UsageError("--all cannot be combined with --datasource or --tables")
        if not (all_tables or datasource or tables):
            raise click.UsageError(
                "choose the tables with --all, --datasource NAME or --tables a,b"
            )
        names = [t.strip() for t in tables.split(",") if t.strip()] if tables else None
        if tables is not None and not names:
            raise click.UsageError("--tables needs at least one table name")

        def select(settings: Settings) -> list[TableSettings]:
            return settings.select(all_tables, datasource, names)

        return command(*args, select=select, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_file",
    default=DEFAULT_SETTINGS,
    show_default=True,
    envvar="PANORAMA_SETTINGS",
    help="Settings file (YAML).",
)
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks (secrets stay hidden).")
@click.version_option(__version__, prog_name="panorama-elt")
@click.pass_context
def main(ctx: click.Context, settings_file: str, debug: bool) -> None:
    """Copy MySQL and Open edX data into a datalake (S3 + Glue + Athena, or local DuckDB)."""
    ctx.obj = Context(settings_file, debug)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stdout,
        force=True,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.INFO if debug else logging.WARNING)
    install_secret_filter(ctx.obj.secrets)


pass_context = click.make_pass_decorator(Context)


def _datalake(ctx: Context) -> Any:
    from panorama_elt.datalakes import make_datalake

    return make_datalake(ctx.settings.datalake)


@main.command("extract-and-load")
@selection_options
@click.option("--force", is_flag=True, help="Full extraction, also of incremental tables.")
@click.option(
    "--results-file",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the run summary as JSON.",
)
@pass_context
@handle_errors
def extract_and_load(
    ctx: Context,
    select: Callable[[Settings], list[TableSettings]],
    force: bool,
    results_file: str | None,
) -> None:
    """Extract tables, upload their files and register new partitions."""
    from panorama_elt.runner import Runner, results_document
    from panorama_elt.secret_columns import warn_secret_columns

    settings = ctx.settings
    tables = select(settings)
    warn_secret_columns(tables)
    if results_file and not Path(results_file).resolve().parent.is_dir():
        raise UsageError(f"--results-file: folder {Path(results_file).parent} does not exist")
    started = datetime.now(UTC)
    clock = time.monotonic()
    with _exclusive(settings):
        datalake = _datalake(ctx)
        runner = Runner(settings, datalake)
        try:
            results = runner.run(tables, force)
        finally:
            runner.close()
            datalake.close()
    for r in results:
        # Errors may quote a library's message: mask before printing or encoding them.
        r.error = ctx.secrets.scrub(r.error) if r.error else r.error
    failed = [r for r in results if r.status != "ok"]
    _print_summary(results)
    if results_file:
        document = {
            "panorama_elt_version": __version__,
            "settings_file": str(Path(ctx.settings_file).resolve()),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - clock, 3),
            "force": force,
            "status": "failed" if failed else "ok",
            "exit_code": 1 if failed else 0,
            "tables": results_document(results),
        }
        try:
            Path(results_file).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise PanoramaError(
                f"--results-file: cannot write {results_file}: {exc.strerror}"
            ) from None
    if failed:
        click.secho(
            f"{len(failed)} of {len(results)} tables failed: {', '.join(r.table for r in failed)}",
            fg="red",
            err=True,
        )
        sys.exit(1)


def _exclusive(settings: Settings) -> AbstractContextManager[None]:
    """The run lock for the current command: one command that writes to the datalake at a time.

    Taken after the settings are valid (bad settings exit 2, whoever runs) and before the
    datalake is opened; SIGTERM then unwinds the command, so the lock and temp files go with it.
    """
    signal.signal(signal.SIGTERM, _terminate)
    command = click.get_current_context().command.name or "panorama"
    return run_lock(settings.file, command)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (docker stop, kill): unwind so temp files go and nothing half-done is registered."""
    raise SystemExit(128 + signum)


def _print_summary(results: list[Any]) -> None:
    width = max([len("table"), *(len(r.table) for r in results)])
    click.echo(
        f"{'table':<{width}} {'mode':<11} {'rows':>10} {'parts':>6} {'new':>5} {'removed':>7} "
        f"{'bytes':>12} {'secs':>7} {'zero dates':>10}  status"
    )
    for r in results:
        status = "ok" if r.status == "ok" else f"FAILED: {r.error}"
        if r.counts:
            status += "  " + " ".join(f"{name}={n}" for name, n in r.counts.items())
        click.echo(
            f"{r.table:<{width}} {r.mode:<11} {r.rows:>10} {r.partitions_written:>6} "
            f"{r.partitions_registered:>5} {r.partitions_removed:>7} {r.bytes:>12} "
            f"{r.seconds:>7.2f} {r.zero_dates:>10}  {status}"
        )


@main.command("create-datalake-tables")
@selection_options
@pass_context
@handle_errors
def create_datalake_tables(ctx: Context, select: Callable[[Settings], list[TableSettings]]) -> None:
    """Create (or update) the raw tables in the catalog; with --all, load the country codes too."""
    with _exclusive(ctx.settings):
        failures = _each_table(
            ctx, select, "create_table", "raw table", lambda t: t.datalake_table_name
        )
        if _everything(ctx, select):
            failures += _load_reference_tables(ctx)
    if failures:
        sys.exit(1)


@main.command("create-datalake-views")
@selection_options
@pass_context
@handle_errors
def create_datalake_views(ctx: Context, select: Callable[[Settings], list[TableSettings]]) -> None:
    """Create or replace the typed views; with --all, then the analytics views and the user's."""
    with _exclusive(ctx.settings):
        failures = _each_table(ctx, select, "create_view", "view", lambda t: t.datalake_table_view)
        if _everything(ctx, select):
            failures += _create_analytics_views(ctx)
    if failures:
        sys.exit(1)


def _everything(ctx: Context, select: Callable[[Settings], list[TableSettings]]) -> bool:
    """True when the selection is every table of the settings (--all, or all named)."""
    return select(ctx.settings) == ctx.settings.tables


def _load_reference_tables(ctx: Context) -> int:
    """Create and load the built-in country codes table; the number of failures (0 or 1)."""
    from panorama_elt.reference import builtin_country_codes, reference_settings
    from panorama_elt.runner import Runner, TableResult

    if not builtin_country_codes(ctx.settings):
        return 0  # the settings load a country_codes table of their own
    settings = reference_settings(ctx.settings)
    table = settings.tables[0]
    datalake = _datalake(ctx)
    runner = Runner(settings, datalake)
    try:
        datalake.create_table(table)
        (result,) = runner.run([table], force=True)
    except Exception as exc:  # noqa: BLE001 - the reference table's failure, whatever its kind
        result = TableResult(table.name, table.datasource, table.datalake_table_name)
        result.status, result.error = "failed", _failure(ctx, exc, table.name)
    finally:
        runner.close()
        datalake.close()
    if result.status == "ok":
        click.echo(f"{table.name}: reference table {table.datalake_table_name}, {result.rows} rows")
        return 0
    click.secho(f"{table.name}: {ctx.secrets.scrub(str(result.error))}", fg="red", err=True)
    return 1


def _create_analytics_views(ctx: Context) -> int:
    """Create the analytics views in order, one line each; the number of failures."""
    from panorama_elt.analytics import create_views
    from panorama_elt.reference import builtin_country_codes, country_codes_table

    datalake = _datalake(ctx)
    failures = 0
    try:
        if builtin_country_codes(ctx.settings):
            table = country_codes_table(ctx.settings)
            failures += _step(
                ctx, table.name, f"view {table.datalake_table_view}", datalake.create_view, table
            )
        for outcome in create_views(ctx.settings, datalake):
            name = outcome.view.name
            if outcome.error:
                failures += 1
                click.secho(f"{name}: {ctx.secrets.scrub(outcome.error)}", fg="red", err=True)
            elif outcome.skipped:
                click.echo(f"{name}: skipped: {outcome.skipped}")
            else:
                click.echo(f"{name}: analytics view")
    finally:
        datalake.close()
    return failures


main.add_command(create_datalake_views, "create-table-views")


@main.command("drop-datalake-tables")
@selection_options
@pass_context
@handle_errors
def drop_datalake_tables(ctx: Context, select: Callable[[Settings], list[TableSettings]]) -> None:
    """Drop the raw tables and their views (the files stay); with --all, the analytics views
    and the built-in country codes table first."""
    failures = 0
    with _exclusive(ctx.settings):
        if _everything(ctx, select):
            failures += _drop_analytics(ctx)
        failures += _each_table(
            ctx, select, "drop_table", "dropped", lambda t: t.datalake_table_name
        )
    if failures:
        sys.exit(1)


def _drop_analytics(ctx: Context) -> int:
    """Drop the analytics views (last made first) and the built-in country codes table."""
    from panorama_elt.analytics import builtin_views, user_views
    from panorama_elt.reference import builtin_country_codes, country_codes_table

    views = builtin_views(ctx.settings) + user_views(ctx.settings)
    datalake = _datalake(ctx)
    failures = 0
    try:
        for view in reversed(views):
            failures += _step(ctx, view.name, "dropped", datalake.drop_sql_view, view.name)
    finally:
        datalake.close()
    if builtin_country_codes(ctx.settings):
        table = country_codes_table(ctx.settings)
        failures += _each_table(
            ctx, lambda _: [table], "drop_table", "dropped", lambda t: t.datalake_table_name
        )
    return failures


def _each_table(
    ctx: Context,
    select: Callable[[Settings], list[TableSettings]],
    method: str,
    what: str,
    name: Callable[[TableSettings], str],
) -> int:
    """Call a datalake method on each selected table, one line each; the number of failures.

    The caller holds the run lock (see _exclusive); a failing table fails alone.
    """
    tables = select(ctx.settings)
    failures = 0
    datalake = _datalake(ctx)
    try:
        for table in tables:
            if not table.fields:
                click.secho(
                    f"{table.name}: no fields in the settings; run set-tables-fields first",
                    fg="red",
                    err=True,
                )
                failures += 1
                continue
            failures += _step(
                ctx, table.name, f"{what} {name(table)}", getattr(datalake, method), table
            )
    finally:
        datalake.close()
    return failures


def _step(ctx: Context, label: str, done: str, action: Callable[..., Any], *args: Any) -> int:
    """Run one catalog step: a line saying it was done, or its error in red; 1 if it failed."""
    try:
        action(*args)
    except Exception as exc:  # noqa: BLE001 - one step's failure, whatever its kind
        click.secho(f"{label}: {_failure(ctx, exc, label)}", fg="red", err=True)
        return 1
    click.echo(f"{label}: {done}")
    return 0


@main.command("set-tables")
@click.option(
    "--tables",
    "-t",
    "tables",
    help="Comma-separated table names (an xls datasource without it: one table per sheet).",
)
@click.option("--datasource", help="Datasource to set (default: the only MySQL datasource).")
@pass_context
@handle_errors
def set_tables(ctx: Context, tables: str | None, datasource: str | None) -> None:
    """Write a datasource's table list into the settings file."""
    from panorama_elt.settings_file import set_tables as write_tables

    extra: dict[str, dict[str, str]] = {}
    if tables is None:
        extra = _listed_tables(ctx, datasource)
        names = list(extra)
    else:
        names = [t.strip() for t in tables.split(",") if t.strip()]
    if not names:
        raise UsageError("--tables needs at least one table name")
    if datasource and ctx.settings.datasource(datasource).type == "edfi_api":
        names = _edfi_resources(ctx.settings.datasource(datasource), names)
    ds = write_tables(Path(ctx.settings_file), names, datasource, extra)
    click.echo(f"{ds}: tables set to {', '.join(names)} in {ctx.settings_file}")


def _listed_tables(ctx: Context, datasource: str | None) -> dict[str, dict[str, str]]:
    """The tables an xls datasource offers (its sheets), for set-tables without --tables."""
    from panorama_elt.datasources import make_datasource

    settings = ctx.settings.datasource(datasource) if datasource else None
    if settings is None or settings.type != "xls":
        raise UsageError("--tables is required (only an xls datasource lists its sheets)")
    source = make_datasource(settings)
    try:
        return source.list_tables()
    finally:
        source.close()


def _edfi_resources(settings: DatasourceSettings, patterns: list[str]) -> list[str]:
    """Ed-Fi resource names matching the wildcards, from the API's dependency list."""
    from panorama_elt.datasources.edfi_api import EdfiDatasource

    source = EdfiDatasource(settings)
    try:
        return source.select_resources(patterns)
    finally:
        source.close()


@main.command("set-tables-fields")
@selection_options
@pass_context
@handle_errors
def set_tables_fields(ctx: Context, select: Callable[[Settings], list[TableSettings]]) -> None:
    """Read each table's columns and types from the source and write them into the settings."""
    from panorama_elt.datasources import make_datasource
    from panorama_elt.settings_file import set_fields

    settings = ctx.settings
    tables = select(settings)
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    missing = []
    for ds_name in dict.fromkeys(t.datasource for t in tables):
        names = [t.name for t in tables if t.datasource == ds_name]
        source = make_datasource(settings.datasource(ds_name))
        try:
            columns = source.describe(names)
        finally:
            source.close()
        for name in names:
            if name in columns:
                found[(ds_name, name)] = columns[name]
            else:
                missing.append(f"{ds_name}.{name}")
    set_fields(Path(ctx.settings_file), found)
    for (ds_name, name), cols in found.items():
        click.echo(f"{ds_name}.{name}: {len(cols)} fields")
    if missing:
        click.secho(f"not found in the source: {', '.join(missing)}", fg="red", err=True)
        sys.exit(1)


@main.command("test-connections")
@pass_context
@handle_errors
def test_connections(ctx: Context) -> None:
    """Check every datasource and the datalake; one line each."""
    from panorama_elt.datasources import make_datasource

    settings = ctx.settings
    failed = False
    for ds in settings.datasources:
        try:
            source = make_datasource(ds)
            try:
                detail = source.test_connection()
            finally:
                source.close()
            click.echo(f"OK      datasource {ds.name}: {detail}")
        except PanoramaError as exc:
            failed = True
            click.secho(f"FAILED  datasource {ds.name}: {ctx.secrets.scrub(str(exc))}", fg="red")
    try:
        datalake = _datalake(ctx)
        try:
            checks = datalake.test_connection()
        finally:
            datalake.close()
    except PanoramaError as exc:
        checks = [("datalake", False, str(exc))]
    for what, ok, detail in checks:
        failed = failed or not ok
        line = f"{'OK' if ok else 'FAILED':<7} datalake {what}: {ctx.secrets.scrub(detail)}"
        click.secho(line, fg=None if ok else "red")
    if failed:
        sys.exit(1)


@main.command("query")
@click.argument("sql")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="A table for the terminal, CSV, or JSON (one object per row).",
)
@pass_context
@handle_errors
def query(ctx: Context, sql: str, output: str) -> None:
    """Run one SQL query on the datalake (DuckDB locally, Athena on AWS) and print its rows."""
    from panorama_elt.query_output import format_rows

    datalake = _datalake(ctx)
    try:
        columns, rows = datalake.query(sql)
    finally:
        datalake.close()
    click.echo(format_rows(columns, rows, output), nl=False)
