"""The exceptions the CLI turns into one clear line and an exit code."""


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
