"""One error hierarchy for the whole engine.

Every error a user can cause derives from :class:`EngineError`. Messages say what was wrong, the
offending value (usually a path), and what to do next; the CLI prints them as one line.
"""

from __future__ import annotations

__all__ = [
    "EngineError",
    "ConfigError",
    "DatasetError",
    "EmptyDatasetError",
    "ListFileError",
    "ImageDecodeError",
    "StatsFileError",
    "WeightsError",
    "WeightsNotFoundError",
    "ReferenceStatsError",
    "ReferenceNotFoundError",
    "UnknownTaskError",
    "UnknownNameError",
    "StoreError",
    "BudgetError",
    "RunFailedError",
    "NotDecisiveError",
]


class EngineError(Exception):
    """Base class of every error caused by user input, files or environment."""


class ConfigError(EngineError, ValueError):
    """A configuration value is invalid or two options contradict each other."""


class DatasetError(EngineError):
    """A dataset path, layout or list file cannot be used."""


class EmptyDatasetError(DatasetError):
    """A dataset has no usable image (empty, or every file was bad)."""


class ListFileError(DatasetError):
    """A list/CSV file is malformed (wrong columns, non-integer label...)."""


class ImageDecodeError(DatasetError):
    """One image cannot be used. ``reason`` is a short code such as ``zero-byte`` or ``truncated``.

    Dataset readers catch it, count the file as skipped with its reason, and go on.
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


class StatsFileError(EngineError):
    """A statistics (.npz) file is missing keys, has wrong shapes or cannot be read."""


class WeightsError(EngineError):
    """Model weights exist but cannot be loaded (wrong format, wrong shapes)."""


class WeightsNotFoundError(WeightsError):
    """Model weights are not available locally and cannot be downloaded."""


class ReferenceStatsError(EngineError):
    """A reference-statistics entry is broken or cannot be built."""


class ReferenceNotFoundError(ReferenceStatsError):
    """No reference statistics with that name or path exist."""


class UnknownNameError(EngineError, KeyError):
    """A name (task, method, backbone...) is not one of the known choices."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownTaskError(UnknownNameError):
    """A task name is not known; the message lists close matches."""


class StoreError(EngineError):
    """The results store (SQLite) cannot be opened or is inconsistent."""


class BudgetError(EngineError):
    """A requested time budget is too small for even the smallest run."""


class RunFailedError(EngineError):
    """Every unit of work of a run failed (every trial diverged, every trial raised...).

    Whatever finished is kept; the message groups identical errors and says what to fix.
    """


class NotDecisiveError(BudgetError):
    """A pilot plan cannot detect the difference asked for; ``plan`` is its JSON form (shown before refusing)."""

    def __init__(self, message: str, plan: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.plan = plan
