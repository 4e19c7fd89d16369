"""Errors a user sees: each names what is wrong and where."""


class TunelabError(Exception):
    """Base class for errors reported to the user without a traceback."""


class ConfigError(TunelabError):
    """A config file or command-line override is invalid."""


class RecordError(TunelabError):
    """A data file holds a record that cannot be read; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class OutputExistsError(TunelabError):
    """An output already exists and the run was not asked to overwrite it."""
