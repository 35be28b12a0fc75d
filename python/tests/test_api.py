"""The Python API and the command the wheel installs, against real databases and archives.

Run by .ci/run after `pip install .` into a venv (see python/tests/conftest.py for the
fixtures). Every function, each exception class, the GIL released, Ctrl-C, progress, and
reports equal to the command's --json.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import litevault

CLI = str(Path(sys.executable).with_name("litevault"))


def make_db(path, rows=100, blob=0):
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, data BLOB)")
    if rows:
        con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO notes(body, data) SELECT 'note ' || i, randomblob(?) FROM n",
        (rows, blob),
        )
    con.commit()
    con.close()
    return path


def rows(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT id, body, hex(data) FROM notes ORDER BY id").fetchall()
    finally:
        con.close()


def cli_json(*args):
    out = subprocess.run([CLI, *args, "--json"], capture_output=True, text=True)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


# Fields that differ between two runs of the same command (times, durations).
VOLATILE = {"duration_ms", "snapshot_ms", "phases", "ms", "space_available"}


def masked(value):
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LITEVAULT_DIR", str(tmp_path / "default-backups"))
    return tmp_path


def test_backup_list_show_verify_restore_round_trip(work):
    db = make_db(work / "app.db")
    r = litevault.backup(db, dir=work / "backups")
    assert isinstance(r, litevault.BackupReport)
    assert Path(r.archive).is_file() and r.archive.endswith(".tar.zst")
    assert r.db_size == os.path.getsize(db) and r.archive_size == os.path.getsize(r.archive)
    assert r.tables == 1 and r.rows == 100 and r.kind == "full"
    assert r.to_dict()["archive"] == r.archive

    listed = litevault.list(work / "backups")
    assert [a.name for a in listed] == [Path(r.archive).name]
    assert listed[0].db_size == r.db_size and listed[0].created_at.endswith("Z")
    assert listed[0].manifest.source == str(db)

    m = litevault.show(r.archive)
    assert isinstance(m, litevault.Manifest) and m.kind == r.to_dict()["kind"] or m.db_size == r.db_size

    v = litevault.verify(r.archive)
    assert v.ok is True and v.checks and all(c.status in ("pass", "skipped") for c in v.checks)

    plan = litevault.restore(r.archive, work / "copy.db", dry_run=True)
    assert not (work / "copy.db").exists()
    assert plan.to_dict()["target"] == str(work / "copy.db")

    done = litevault.restore(r.archive, work / "copy.db")
    assert done.restored is True
    assert rows(work / "copy.db") == rows(db)


def test_reports_equal_the_commands_json(work):
    db = make_db(work / "app.db")
    r = litevault.backup(db, dir=work / "backups")
    for py, args in [
        (litevault.list(work / "backups"), ["list", "--dir", str(work / "backups")]),
        (litevault.show(r.archive), ["show", r.archive]),
        (litevault.verify(r.archive), ["verify", r.archive]),
        (litevault.restore(r.archive, work / "x.db", dry_run=True), ["restore", r.archive, str(work / "x.db"), "--dry-run"]),
        (litevault.prune(work / "backups", keep_last=1, dry_run=True), ["prune", "--dir", str(work / "backups"), "--keep-last", "1", "--dry-run"]),
    ]:
        code, cli, err = cli_json(*args)
        assert code == 0, err
        got = [a.to_dict() for a in py] if isinstance(py, list) else py.to_dict()
        assert masked(got) == masked(cli), args
    # A second backup from the command: the same fields, the same values but names and times.
    code, cli, err = cli_json("backup", str(db), "--dir", str(work / "backups"))
    assert code == 0, err
    py = r.to_dict()
    assert set(py) == set(cli)
    for key in ("db_size", "tables", "rows", "kind", "method", "compression", "source", "database_sha256"):
        assert py[key] == cli[key], key


def test_sql_dumps_merge_copy_and_prune(work):
    db = make_db(work / "app.db")
    (work / "h").mkdir()
    dump = litevault.backup(db, output=work / "h" / "app.sql", format="sql", compression="none")
    text = (work / "h" / "app.sql").read_text()
    assert dump.archive == str(work / "h" / "app.sql") and "INSERT INTO" in text

    # A teammate's copy with one more row merges in; a dry run changes nothing.
    other = make_db(work / "teammate.db", rows=0)
    con = sqlite3.connect(other)
    con.execute("INSERT INTO notes(body, data) VALUES ('from teammate', x'00')")
    con.commit()
    con.close()
    theirs = litevault.backup(other, output=work / "h" / "teammate.sql", format="sql", compression="none")
    plan = litevault.merge([theirs.archive], db, dry_run=True, no_safety_copy=True)
    assert isinstance(plan, litevault.MergeReport)
    assert len(rows(db)) == 100
    litevault.merge(theirs.archive, db, no_safety_copy=True)
    assert len(rows(db)) == 101 and rows(db)[-1][1] == "from teammate"

    a = litevault.backup(db, dir=work / "backups", name="app")
    copied = litevault.copy([a.archive], work / "elsewhere")
    assert (work / "elsewhere" / Path(a.archive).name).is_file()
    assert copied.to_dict()

    b = litevault.backup(db, dir=work / "backups", name="app")
    pruned = litevault.prune(work / "backups", keep_last=1)
    assert [x.name for x in litevault.list(work / "backups")] == [Path(b.archive).name]
    assert pruned.dry_run is False


def test_incremental_labels_files_and_encryption(work):
    db = make_db(work / "app.db", rows=500, blob=200)
    (work / "uploads").mkdir()
    (work / "uploads" / "a.txt").write_text("hello")
    full = litevault.backup(db, dir=work / "b", incremental=True, label={"app_version": "1.2"}, include=[work / "uploads"])
    assert full.kind == "full" and full.files_bytes == 5
    con = sqlite3.connect(db)
    con.execute("UPDATE notes SET body = 'changed' WHERE id = 7")
    con.commit()
    con.close()
    inc = litevault.backup(db, dir=work / "b", incremental=True, include=[work / "uploads"])
    assert inc.kind == "incremental" and inc.parent and inc.archive_size < full.archive_size
    [x] = [a for a in litevault.list(work / "b", label={"app_version": "1.2"})]
    assert x.labels.app_version == "1.2"
    out = litevault.restore(latest=True, dir=work / "b", name="app", db=work / "r.db", files_to=work / "restored-files")
    assert out.restored and rows(work / "r.db") == rows(db)
    assert (work / "restored-files" / "uploads" / "a.txt").read_text() == "hello"

    (work / "pass").write_text("correct horse battery staple\n")
    enc = litevault.backup(db, dir=work / "e", passphrase_file=work / "pass")
    assert enc.archive.endswith(".age")
    with pytest.raises(litevault.LitevaultError) as e:
        litevault.restore(enc.archive, work / "no-key.db")
    assert e.value.hint
    litevault.restore(enc.archive, work / "with-key.db", passphrase_file=work / "pass")
    assert rows(work / "with-key.db") == rows(db)


def test_each_error_class_is_its_exception_with_hint_and_exit_code(work):
    db = make_db(work / "app.db")
    r = litevault.backup(db, dir=work / "b")

    with pytest.raises(litevault.RefusedError) as refused:
        litevault.restore(r.archive, db)
    assert refused.value.exit_code == 4 and "overwrite=True" in refused.value.hint

    with pytest.raises(litevault.UsageError) as usage:
        litevault.backup(db, output=work / "x.tar.zst", dir=work / "b")
    assert usage.value.exit_code == 2 and "output=" in str(usage.value) and "dir=" in str(usage.value)
    assert isinstance(usage.value, ValueError)

    with pytest.raises(litevault.FailedError) as failed:
        litevault.verify(work / "missing.tar.zst")
    assert failed.value.exit_code == 1

    tampered = work / "tampered.tar.zst"
    data = bytearray(Path(r.archive).read_bytes())
    data[len(data) - 64] ^= 0xFF  # in the data frames (the head holds a filler frame)
    tampered.write_bytes(bytes(data))
    with pytest.raises(litevault.CorruptionError) as corrupt:
        litevault.restore(tampered, work / "t.db")
    assert corrupt.value.exit_code == 3 and not (work / "t.db").exists()

    not_a_db = work / "notes.txt"
    not_a_db.write_text("not a database")
    with pytest.raises(litevault.LitevaultError) as e:
        litevault.backup(not_a_db, dir=work / "b")
    assert e.value.to_dict()["exit_code"] == e.value.exit_code

    with pytest.raises(TypeError):
        litevault.backup(db, no_such_option=True)

    for cls in (litevault.FailedError, litevault.UsageError, litevault.CorruptionError,
                litevault.RefusedError, litevault.CancelledError):
        assert issubclass(cls, litevault.LitevaultError)


def big_db(path, mib):
    return make_db(path, rows=mib * 256, blob=4000)


def test_progress_is_reported_and_returning_false_cancels_cleanly(work):
    db = big_db(work / "big.db", 64)
    seen = []
    litevault.backup(db, dir=work / "b", progress=lambda phase, done, total: seen.append((phase, done, total)))
    phases = {p for p, _, _ in seen}
    assert "snapshot" in phases or "compress" in phases, phases
    assert any(done > 0 for _, done, _ in seen)

    calls = []

    def stop_after_some(phase, done, total):
        calls.append(done)
        return len(calls) < 3

    with pytest.raises(litevault.CancelledError) as e:
        litevault.backup(db, dir=work / "c", progress=stop_after_some)
    assert e.value.exit_code == 130
    assert not (work / "c").exists() or not any((work / "c").iterdir())

    def raises(phase, done, total):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        litevault.backup(db, dir=work / "d", progress=raises)
    assert not (work / "d").exists() or not any((work / "d").iterdir())


def test_the_gil_is_released_while_work_runs(work):
    db = big_db(work / "big.db", 96)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    started = time.monotonic()
    try:
        litevault.backup(db, dir=work / "b")
        litevault.verify(litevault.list(work / "b")[-1].path)
    finally:
        ended = time.monotonic()
        stop.set()
        t.join()
    during = [x for x in ticks if started < x < ended]
    # The other thread ran all along: no gap longer than the 50 ms signal poll and a margin.
    assert ended - started > 0.3, "the work was too short to tell"
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert len(during) > 50 and max(gaps) < 0.5, (len(during), max(gaps))


def test_ctrl_c_cancels_a_long_backup_within_a_second_and_publishes_nothing(work):
    db = big_db(work / "big.db", 256)
    out = work / "b"
    sent = []

    def interrupt():
        time.sleep(0.3)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        litevault.backup(db, dir=out)
    stopped = time.monotonic()
    assert sent, "the backup ended before the signal: make the database bigger"
    assert stopped - sent[0] < 1.0, stopped - sent[0]
    # Nothing published, no temp file left, and the database is as it was.
    leftovers = list(out.iterdir()) if out.exists() else []
    assert leftovers == [], leftovers
    assert not [p for p in work.iterdir() if p.name.startswith(".") and "litevault" in p.name]
    assert litevault.verify(db).ok


def test_the_command_is_installed_and_is_the_same_command_line(work):
    db = make_db(work / "app.db")
    version = subprocess.run([CLI, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("litevault ")
    code, report, err = cli_json("backup", str(db), "--dir", str(work / "b"))
    assert code == 0 and Path(report["archive"]).is_file(), err
    # Exit codes as the binary's: refused is 4, usage 2.
    refused = subprocess.run([CLI, "restore", report["archive"], str(db)], capture_output=True, text=True)
    assert refused.returncode == 4 and "already exists" in refused.stderr
    usage = subprocess.run([CLI, "backup"], capture_output=True, text=True)
    assert usage.returncode == 2
    module = subprocess.run([sys.executable, "-m", "litevault", "list", "--dir", str(work / "b")], capture_output=True, text=True)
    assert module.returncode == 0 and Path(report["archive"]).name in module.stdout


def test_help_explains_each_function():
    for fn in (litevault.backup, litevault.list, litevault.show, litevault.verify,
               litevault.restore, litevault.merge, litevault.copy, litevault.prune):
        assert fn.__doc__ and len(fn.__doc__) > 80, fn.__name__
    assert "dir" in litevault.backup.__doc__
    root = Path(litevault.__file__).parent
    assert (root / "py.typed").exists() and (root / "_native.pyi").exists()
