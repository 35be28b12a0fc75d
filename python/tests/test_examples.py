"""The programs in examples/python, run as a user runs them (each in a fresh directory)."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("LITEVAULT_DIR", str(tmp_path / "default-backups"))

    def run(program, *args, code=0):
        p = subprocess.run([sys.executable, str(EXAMPLES / program), *args], cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == code, (program, args, p.stdout, p.stderr)
        return p.stdout + p.stderr

    run.dir = tmp_path
    return run


def test_notes_fts_dumps_lists_and_restores_guarded(run):
    run("notes_fts.py", "add", "buy milk")
    run("notes_fts.py", "add", "call the plumber")
    assert "backed up" in run("notes_fts.py", "backup")
    assert ".sql.gz" in run("notes_fts.py", "backups")
    run("notes_fts.py", "add", "a note written after the backup")
    # Never over the live notes by accident; with --force, the old notes are kept aside.
    assert "already exists" in run("notes_fts.py", "restore", code=4)
    assert "kept in" in run("notes_fts.py", "restore", "--force")
    assert run("notes_fts.py", "search", "milk").strip() == "buy milk"
    assert run("notes_fts.py", "search", "written").strip() == ""


def test_media_library_labels_and_the_schema_rule(run):
    run("media_library.py", "init")
    (run.dir / "a.jpg").write_bytes(b"x" * 100)
    (run.dir / "b.jpg").write_bytes(b"y" * 200)
    run("media_library.py", "scan", "a.jpg", "b.jpg")
    assert ".tar.gz: 2 media, app 3.1.0" in run("media_library.py", "backup")
    assert "(app 3.1.0, 2 media)" in run("media_library.py", "restore", "copy.db")
    con = sqlite3.connect(run.dir / "copy.db")
    assert con.execute("SELECT count(*), sum(bytes) FROM media").fetchone() == (2, 300)
    con.close()
    # An older version of the application (schema 1) does not get schema 2 by accident.
    old = sqlite3.connect(run.dir / "old.db")
    old.executescript("PRAGMA user_version=1; CREATE TABLE media(id INTEGER PRIMARY KEY, path TEXT, bytes INTEGER);")
    old.close()
    assert "newer" in run("media_library.py", "restore", "old.db", "--overwrite", code=4)
    run("media_library.py", "restore", "old.db", "--overwrite", "--allow-newer-schema")
    assert sqlite3.connect(run.dir / "old.db").execute("PRAGMA user_version").fetchone() == (2,)


def test_team_sync_merges_dumps_in_git_across_machines(run):
    run("team_sync.py", "--me", "alice", "--repo", "shared", "add", "fix the login page")
    run("team_sync.py", "--me", "bob", "--repo", "shared", "add", "write the docs")
    run("team_sync.py", "--me", "alice", "--repo", "shared", "sync")
    out = run("team_sync.py", "--me", "bob", "--repo", "shared", "sync")
    assert "fix the login page" in out and "write the docs" in out
    out = run("team_sync.py", "--me", "alice", "--repo", "shared", "sync")
    assert "fix the login page" in out and "write the docs" in out
    # A second round adds nothing twice.
    run("team_sync.py", "--me", "bob", "--repo", "shared", "sync")
    for me in ("alice", "bob"):
        con = sqlite3.connect(run.dir / f"{me}.db")
        assert con.execute("SELECT count(*) FROM tasks").fetchone() == (2,), me
        con.close()
    log = subprocess.run(["git", "-C", str(run.dir / "shared"), "log", "--oneline"], capture_output=True, text=True)
    assert log.stdout.count("sync") == 4
