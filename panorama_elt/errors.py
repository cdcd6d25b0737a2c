"""The exceptions the CLI turns into one clear line and an exit code, and those lines."""

import logging

_log = logging.getLogger("panorama_elt")


class PanoramaError(Exception):
    """A problem the user can act on; shown as one line, exit code 1."""

    exit_code = 1


class SettingsError(PanoramaError):
    """Invalid settings file or command-line usage; exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            message = head + self.problems[0]
        else:
            message = head + f"{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(message)


class UsageError(SettingsError):
    """Command-line arguments that do not fit together; exit code 2."""


class SourceError(PanoramaError):
    """A datasource could not be read (connection, permissions, missing table)."""


class DatalakeError(PanoramaError):
    """The datalake refused an upload or a catalog operation."""


class LockedError(PanoramaError):
    """Another run holds the lock; exit code 3 so cron logs can tell it apart."""

    exit_code = 3


def one_line(text: object) -> str:
    """A message on one line, whatever a library or a service put in it."""
    return " ".join(str(text).split())


def is_expected(exc: BaseException) -> bool:
    """A failure the tool reports as one line: the project's errors and the system's (OSError).

    Anything else escaped a plugin's wrapping: a bug, shown with its traceback.
    """
    return isinstance(exc, (PanoramaError, OSError))


def failure_line(exc: BaseException) -> str:
    """One line for a failure; an unexpected exception is named by its type."""
    if is_expected(exc):
        return one_line(exc)
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    return one_line(f"unexpected {name}: {exc}")


def log_failure(what: str, exc: BaseException) -> str:
    """Log ``<what>: failed: <one line>`` and return the line.

    The traceback goes with it when the failure is unexpected (a bug), or always with --debug;
    like every log record it passes the secret filter (secrets.py) on its way out.
    """
    line = failure_line(exc)
    _log.error("%s: failed: %s", what, line, exc_info=exc if wants_traceback(exc) else None)
    return line


def wants_traceback(exc: BaseException) -> bool:
    """An unexpected failure (a bug) shows its traceback; the others with --debug only."""
    return not is_expected(exc) or _log.isEnabledFor(logging.DEBUG)
