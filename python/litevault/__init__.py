"""litevault: safe, fast, verifiable backups of SQLite databases, and restores that cannot
lose data.

Every function runs the same code as the ``litevault`` command (in this process, no
subprocess) and takes its options as keyword arguments named as the command line names them
(``--keep-daily 7`` is ``keep_daily=7``; a repeatable option takes a list; a flag takes
``True``). Each returns a report whose attributes, and ``to_dict()``, are the command's
``--json`` report::

    import litevault
    r = litevault.backup("app.db", dir="backups")
    print(r.archive, r.db_size, r.archive_size)
    for a in litevault.list("backups"):
        print(a.name, a.created_at, a.db_size)
    assert litevault.verify(r.archive).ok
    litevault.restore(r.archive, "copy.db")

Errors are exceptions (``LitevaultError`` and one subclass per class: ``UsageError``,
``CorruptionError``, ``RefusedError``, ``FailedError``, ``CancelledError``), each with ``hint``
and ``exit_code``. The GIL is released while the work runs; Ctrl-C cancels it cleanly (temp
files removed, nothing published) and raises ``KeyboardInterrupt``. Every function takes
``progress=callable(phase, done, total)``; returning ``False`` from it cancels the work.

Keys for encrypted backups: ``identity=`` (age identity or SSH key files) and
``passphrase_file=`` on any function, or the ``LITEVAULT_IDENTITY`` variable.
"""

import json as _json
import os as _os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native
from ._errors import (
    CancelledError,
    CorruptionError,
    FailedError,
    LitevaultError,
    RefusedError,
    UsageError,
)
from ._reports import (
    ArchiveSummary,
    BackupReport,
    CopyReport,
    Manifest,
    MergeReport,
    PruneReport,
    Report,
    RestoreReport,
    VerifyReport,
)

__version__: str = _native.__version__

__all__ = [
    "backup",
    "list",
    "show",
    "verify",
    "restore",
    "merge",
    "copy",
    "prune",
    "LitevaultError",
    "FailedError",
    "UsageError",
    "CorruptionError",
    "RefusedError",
    "CancelledError",
    "Report",
    "BackupReport",
    "ArchiveSummary",
    "Manifest",
    "VerifyReport",
    "RestoreReport",
    "MergeReport",
    "CopyReport",
    "PruneReport",
]

PathLike = Union[str, _os.PathLike]
Progress = Callable[[str, int, Optional[int]], Any]
Many = Union[None, PathLike, Sequence[PathLike]]
Labels = Union[None, Mapping[str, str], Sequence[str]]

_builtin_list = list


def _many(value: Many) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return [_os.fsdecode(_os.fspath(value))]
    return [_os.fsdecode(_os.fspath(v)) for v in value]


def _words(command: str, positional: Iterable[Any], options: Dict[str, Any]) -> List[str]:
    """The command line for ``command``: options as ``--name=value`` (repeated for lists),
    then ``--`` and the positional arguments (so a path that starts with ``-`` stays a path)."""
    words = [command]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif key == "label":
            pairs = value.items() if isinstance(value, Mapping) else (
                v.split("=", 1) if "=" in v else (v, "") for v in _many(value)
            )
            words.extend(f"{flag}={k}={v}" for k, v in pairs)
        elif isinstance(value, (_builtin_list, tuple)):
            words.extend(f"{flag}={_os.fsdecode(_os.fspath(v)) if not isinstance(v, int) else v}" for v in value)
        elif isinstance(value, (int, float)):
            words.append(f"{flag}={value}")
        else:
            words.append(f"{flag}={_os.fsdecode(_os.fspath(value))}")
    words.append("--")
    words.extend(_os.fsdecode(_os.fspath(p)) for p in positional)
    return words


def _run(command: str, positional: Iterable[Any], options: Dict[str, Any], progress: Optional[Progress]) -> Any:
    _, text = _native.run(_words(command, positional, options), progress)
    return _json.loads(text) if text.strip() else None


def backup(
    db: PathLike,
    *,
    output: Optional[PathLike] = None,
    dir: Optional[PathLike] = None,
    name: Optional[str] = None,
    incremental: bool = False,
    full_every: Optional[int] = None,
    method: str = "pages",
    compression: str = "zstd",
    level: Optional[int] = None,
    allow_corrupt: bool = False,
    check_fts: bool = False,
    threads: int = 0,
    priority: str = "low",
    no_checkpoint: bool = False,
    overwrite: bool = False,
    format: str = "archive",
    table: Many = None,
    exclude_table: Many = None,
    include: Many = None,
    label: Labels = None,
    encrypt_to: Many = None,
    encrypt_to_file: Many = None,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> BackupReport:
    """Takes a consistent snapshot of a (live) database into a checksummed archive or SQL dump.

    ``db``: the database file. Where: ``output=`` a file or ``s3://bucket/key``; else ``dir=`` a
    location (a directory or ``s3://bucket/prefix``; default ``$LITEVAULT_DIR``, else
    ``~/.local/share/litevault/backups``) under ``<name>-<stamp>.tar.zst``.

    ``format="sql"`` writes an exact SQL dump (``table=[...]``, ``exclude_table=[...]`` choose
    tables); ``compression`` is ``"zstd"``, ``"gzip"`` or ``"none"``; ``incremental=True`` stores
    only the pages changed since the newest backup of the name; ``include=[dir, ...]`` adds the
    files of directories beside the database; ``label={"key": "value"}`` records the
    application's metadata; ``encrypt_to=[recipient, ...]`` encrypts with age.

    Returns a :class:`BackupReport` (``archive``, ``db_size``, ``archive_size``, ``tables``,
    ...). Raises :class:`CorruptionError` for a database that fails its checks (unless
    ``allow_corrupt``), :class:`RefusedError` for an ``output`` that exists (unless
    ``overwrite``), :class:`UsageError` for options that do not fit together.
    """
    opts = dict(locals())
    del opts["db"], opts["progress"]
    return BackupReport(_run("backup", [db], opts, progress))


def list(
    dir: Optional[PathLike] = None,
    *,
    label: Labels = None,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> List[ArchiveSummary]:
    """The backups in a location (a directory or ``s3://bucket/prefix``; default as for
    :func:`backup`), newest last, each an :class:`ArchiveSummary` (``name``, ``path``,
    ``created_at``, ``db_size``, ``archive_size``, ``manifest``, ``labels``). Only the head of
    each archive is read. ``label={"key": "value"}`` keeps those with that label.
    """
    opts = dict(locals())
    del opts["progress"]
    items = _run("list", [], opts, progress) or []
    return [ArchiveSummary(item) for item in items]


def show(
    archive: PathLike,
    *,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> Manifest:
    """The manifest of an archive or SQL dump (a path or ``s3://bucket/key``): what was backed
    up, when, from where, its size, checks, labels and files. Reads only the head of an archive.
    Returns a :class:`Manifest`; raises :class:`CorruptionError` when it cannot be read."""
    opts = dict(locals())
    del opts["archive"], opts["progress"]
    return Manifest(_run("show", [archive], opts, progress))


def verify(
    path: PathLike,
    *,
    quick: bool = False,
    temp_dir: Optional[PathLike] = None,
    reindex: Union[bool, str, None] = None,
    replica: bool = False,
    name: Optional[str] = None,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> VerifyReport:
    """Proves an archive, SQL dump or database intact, check by check.

    Returns a :class:`VerifyReport`: ``ok`` is ``True`` when every check passed, ``checks``
    lists each (``name``, ``status``, ``detail``). Damage found is a report with ``ok`` False,
    not an exception; an archive that cannot be read at all raises :class:`CorruptionError`.
    ``quick=True`` runs quick_check instead of integrity_check; ``reindex=True`` (or
    ``"all"``) rebuilds disputed (or all) indexes in the scratch copy; ``replica=True`` with a
    location replays its replicated history (``name=`` one database's).
    """
    if reindex is True:
        reindex = "disputed"
    opts = dict(locals())
    del opts["path"], opts["progress"]
    return VerifyReport(_run("verify", [path], opts, progress))


def restore(
    archive: Optional[PathLike] = None,
    db: Optional[PathLike] = None,
    *,
    latest: bool = False,
    dir: Optional[PathLike] = None,
    name: Optional[str] = None,
    at: Optional[str] = None,
    label: Labels = None,
    if_missing: bool = False,
    require_backup: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    allow_newer_schema: bool = False,
    quick: bool = False,
    reindex: Union[bool, str, None] = None,
    safety_dir: Optional[PathLike] = None,
    busy_timeout: Optional[float] = None,
    files_to: Optional[PathLike] = None,
    encrypt_to: Many = None,
    encrypt_to_file: Many = None,
    after: Optional[str] = None,
    after_timeout: Optional[float] = None,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> RestoreReport:
    """Restores an archive or SQL dump to a database file: guarded, verified, atomic.

    ``restore(archive, db)``, or ``restore(latest=True, dir=..., db=...)`` for the newest backup
    of ``name`` in a location (``at="2h ago"`` or a time for the newest at or before it;
    replicated locations restore to the transaction). An existing database is replaced only
    with ``overwrite=True``, after a safety archive of it is kept. ``dry_run=True`` returns the
    plan and changes nothing. ``if_missing=True`` restores only when the database does not
    exist (a container's first start).

    Raises :class:`RefusedError` (it exists, it is in use, a newer schema),
    :class:`CorruptionError` (the backup fails its checks: nothing is changed).
    """
    if latest:
        if archive is not None and db is None:
            archive, db = None, archive
        if archive is not None:
            raise UsageError("restore(latest=True) takes no archive: give db= and dir=", None, 2)
    if db is None:
        raise UsageError("restore() needs the database to restore to: db=", None, 2)
    if reindex is True:
        reindex = "disputed"
    opts = dict(locals())
    for k in ("archive", "db", "progress"):
        del opts[k]
    positional = [db] if archive is None else [archive, db]
    return RestoreReport(_run("restore", positional, opts, progress))


def merge(
    backups: Union[PathLike, Sequence[PathLike]],
    db: PathLike,
    *,
    dry_run: bool = False,
    keys: Optional[PathLike] = None,
    create_missing_tables: bool = False,
    busy_timeout: Optional[float] = None,
    safety_dir: Optional[PathLike] = None,
    no_safety_copy: bool = False,
    encrypt_to: Many = None,
    encrypt_to_file: Many = None,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> MergeReport:
    """Merges the rows of backups or SQL dumps (yours, a teammate's) into a database: rows are
    matched by identity (``keys=`` a file of ``table = ["column", ...]``), new ids are remapped
    with their foreign keys, nothing is overwritten. ``dry_run=True`` reports the plan."""
    opts = dict(locals())
    for k in ("backups", "db", "progress"):
        del opts[k]
    return MergeReport(_run("merge", [*_many(backups), db], opts, progress))


def copy(
    archives: Union[PathLike, Sequence[PathLike]],
    location: PathLike,
    *,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> CopyReport:
    """Copies archives to another location (a directory or ``s3://bucket/prefix``) under their
    own names, never replacing one; each copy is read back and checked."""
    opts = dict(locals())
    for k in ("archives", "location", "progress"):
        del opts[k]
    return CopyReport(_run("copy", [*_many(archives), location], opts, progress))


def prune(
    dir: Optional[PathLike] = None,
    *,
    name: Optional[str] = None,
    keep_last: Optional[int] = None,
    keep_hourly: Optional[int] = None,
    keep_daily: Optional[int] = None,
    keep_weekly: Optional[int] = None,
    keep_monthly: Optional[int] = None,
    keep_yearly: Optional[int] = None,
    keep_within: Optional[str] = None,
    dry_run: bool = False,
    force: bool = False,
    identity: Many = None,
    passphrase_file: Optional[PathLike] = None,
    progress: Optional[Progress] = None,
) -> PruneReport:
    """Deletes old backups by retention policy, per name (restic's ``--keep-*`` rules).
    Never deletes the newest restorable backup of a name, nor a parent of a kept incremental.
    ``dry_run=True`` reports what would go."""
    opts = dict(locals())
    del opts["progress"]
    d = opts.pop("dir")
    opts = {"dir": d, **opts}
    return PruneReport(_run("prune", [], opts, progress))
