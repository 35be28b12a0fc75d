"""Reports: what each operation returns, as objects with attributes.

A report holds exactly what the command line prints with ``--json``; ``to_dict()`` gives it back
(a copy). Attributes are its keys; nested objects are reports too, lists of objects lists of
reports. The classes below name the main fields for editors and type checkers; every other key
of the JSON report is an attribute as well.
"""

import copy
import os
from typing import Any, Dict, Iterator, List, Optional


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Report(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class Report:
    """A report: attribute access over the command's JSON report."""

    __slots__ = ("_data",)

    def __init__(self, data: Dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        data = object.__getattribute__(self, "_data")
        try:
            return _wrap(data[name])
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __getitem__(self, key: str) -> Any:
        return _wrap(self._data[key])

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | set(self._data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Report) and self._data == other._data

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v!r}" for k, v in self._data.items() if not isinstance(v, (dict, list))
        )
        return f"{type(self).__name__}({fields})"

    def to_dict(self) -> Dict[str, Any]:
        """The report as the command line's ``--json`` prints it (a deep copy)."""
        return copy.deepcopy(self._data)


class BackupReport(Report):
    """What ``backup`` did."""

    archive: str
    source: str
    db_size: int
    archive_size: int
    tables: int
    rows: int
    kind: str
    duration_ms: int


class Manifest(Report):
    """An archive's or SQL dump's manifest (``show``)."""

    kind: str
    created_at: str
    source: str
    db_size: int
    labels: Report


class ArchiveSummary(Report):
    """One backup in a location (``list``): its path, size and manifest."""

    path: str
    archive_size: int
    encrypted: bool
    error: Optional[str]

    @property
    def name(self) -> str:
        """The backup's file name (``<name>-<stamp>.tar.zst``, ...)."""
        return os.path.basename(self._data["path"])

    @property
    def manifest(self) -> Optional[Manifest]:
        """The manifest, or ``None`` when it cannot be read (``error`` says why)."""
        m = self._data.get("manifest")
        return Manifest(m) if m is not None else None

    def _from_manifest(self, key: str) -> Any:
        m = self._data.get("manifest") or {}
        return _wrap(m.get(key))

    @property
    def created_at(self) -> Optional[str]:
        """When the backup was taken (UTC, RFC 3339), from its manifest."""
        return self._from_manifest("created_at")

    @property
    def db_size(self) -> Optional[int]:
        """The database's size in bytes, from its manifest."""
        return self._from_manifest("db_size")

    @property
    def labels(self) -> Optional[Report]:
        """The application's labels, from its manifest."""
        return self._from_manifest("labels")


class VerifyReport(Report):
    """The checks ``verify`` ran; ``ok`` is whether all passed."""

    ok: bool
    checks: List[Report]


class RestoreReport(Report):
    """What ``restore`` did: ``restored``, the ``plan`` it followed (``archive``, ``target``,
    ``strategy``, ``manifest``, ...), the ``checks`` the backup passed first, and the
    ``safety_archive`` that keeps the database it replaced. With ``dry_run=True``, the plan
    alone (``archive``, ``target``, ``strategy``, ``checks`` to run, ``space_needed``)."""

    restored: bool
    plan: Report
    checks: List[Report]
    safety_archive: Optional[str]


class MergeReport(Report):
    """What ``merge`` added (or would add, with ``dry_run=True``)."""


class CopyReport(Report):
    """What ``copy`` copied."""


class PruneReport(Report):
    """What ``prune`` kept and deleted (or would, with ``dry_run=True``)."""


for _cls in (Report, BackupReport, Manifest, ArchiveSummary, VerifyReport, RestoreReport,
             MergeReport, CopyReport, PruneReport):
    _cls.__module__ = "litevault"
