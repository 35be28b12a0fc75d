"""A media library that tars its database with a metadata JSON, and refuses to load a backup
from a newer version of itself: with litevault, the metadata are labels in the manifest and the
schema rule is the restore's own (`PRAGMA user_version`).

    python media_library.py init              # library.db at schema version 2
    python media_library.py scan FILE...      # add media rows
    python media_library.py backup            # backups/library-<stamp>.tar.gz, labelled
    python media_library.py restore TARGET [--overwrite] [--allow-newer-schema]
                                              # the newest backup into TARGET (checked first);
                                              # over a database of an older schema: refused
"""

import argparse
import os
import sqlite3
import sys

import litevault

DB, BACKUPS, APP_VERSION, SCHEMA = "library.db", "library-backups", "3.1.0", 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init")
    sub.add_parser("scan").add_argument("files", nargs="+")
    sub.add_parser("backup")
    r = sub.add_parser("restore")
    r.add_argument("target")
    r.add_argument("--overwrite", action="store_true")
    r.add_argument("--allow-newer-schema", action="store_true")
    args = p.parse_args(argv)

    if args.cmd == "init":
        con = sqlite3.connect(DB)
        con.executescript(
            f"PRAGMA journal_mode=WAL; PRAGMA user_version={SCHEMA};"
            "CREATE TABLE IF NOT EXISTS media(id INTEGER PRIMARY KEY, path TEXT UNIQUE, bytes INTEGER);"
        )
        con.close()
    elif args.cmd == "scan":
        with sqlite3.connect(DB) as con:
            for f in args.files:
                con.execute("INSERT OR IGNORE INTO media(path, bytes) VALUES (?, ?)", (f, os.path.getsize(f)))
    elif args.cmd == "backup":
        count = sqlite3.connect(DB).execute("SELECT count(*) FROM media").fetchone()[0]
        r = litevault.backup(
            DB, dir=BACKUPS, compression="gzip",
            label={"app_version": APP_VERSION, "schema": str(SCHEMA), "media_count": str(count)},
        )
        print(f"{r.archive}: {count} media, app {APP_VERSION}")
    elif args.cmd == "restore":
        newest = litevault.list(BACKUPS)[-1]
        print(f"restoring {newest.name} (app {newest.labels.app_version}, {newest.labels.media_count} media)")
        try:
            litevault.restore(newest.path, args.target, overwrite=args.overwrite, safety_dir=BACKUPS,
                              allow_newer_schema=args.allow_newer_schema)
        except litevault.RefusedError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 4
        except litevault.CorruptionError as e:
            print(f"the backup is damaged: {e}", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
