"""A notes tool that keeps its FTS5 store in SQLite, and backs it up the way such tools used to
with `iterdump()` and gzip: timestamped, compressed SQL dumps, a list, a guarded restore.

    python notes_fts.py add "buy milk"        # a note into notes.db (FTS5 indexed)
    python notes_fts.py search milk
    python notes_fts.py backup                # backups/notes-<stamp>.sql.gz
    python notes_fts.py backups               # what is there
    python notes_fts.py restore [--force]     # the newest dump back, never over notes by accident
"""

import argparse
import sqlite3
import sys

import litevault

DB, BACKUPS = "notes.db", "backups"


def open_db():
    con = sqlite3.connect(DB)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS notes USING fts5(body)")
    return con


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("add").add_argument("text")
    sub.add_parser("search").add_argument("query")
    sub.add_parser("backup")
    sub.add_parser("backups")
    sub.add_parser("restore").add_argument("--force", action="store_true")
    args = p.parse_args(argv)

    if args.cmd == "add":
        with open_db() as con:
            con.execute("INSERT INTO notes(body) VALUES (?)", (args.text,))
    elif args.cmd == "search":
        for (body,) in open_db().execute("SELECT body FROM notes WHERE notes MATCH ?", (args.query,)):
            print(body)
    elif args.cmd == "backup":
        # An exact SQL dump (FTS5 tables included, checked before it is written), gzip'd.
        r = litevault.backup(DB, dir=BACKUPS, format="sql", compression="gzip", check_fts=True)
        print(f"backed up {r.db_size} bytes to {r.archive} ({r.archive_size} bytes)")
    elif args.cmd == "backups":
        for a in litevault.list(BACKUPS):
            print(f"{a.name}  {a.created_at}  {a.db_size} bytes")
    elif args.cmd == "restore":
        try:
            r = litevault.restore(latest=True, dir=BACKUPS, name="notes", db=DB, overwrite=args.force, safety_dir=BACKUPS)
        except litevault.RefusedError as e:
            print(f"not restored: {e}\n{e.hint}", file=sys.stderr)
            return 4
        print(f"restored {r.plan.archive}")
        if r.safety_archive:
            print(f"the notes it replaced are kept in {r.safety_archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
