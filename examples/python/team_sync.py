"""A team tool whose members each keep a local SQLite database and share it as SQL dumps in a
git repository: each exports its dump, commits it, and merges the teammates' dumps into its
own database (rows matched by identity, new ids remapped, nothing overwritten).

    python team_sync.py --me alice --repo shared.git add "fix the login page"
    python team_sync.py --me alice --repo shared.git sync    # export, commit, merge the others
"""

import argparse
import pathlib
import sqlite3
import subprocess
import sys

import litevault


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def open_db(path):
    con = sqlite3.connect(path)
    con.executescript(
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY, uid TEXT UNIQUE NOT NULL, title TEXT);"
    )
    return con


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--me", required=True)
    p.add_argument("--repo", required=True, type=pathlib.Path)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("add").add_argument("title")
    sub.add_parser("sync")
    args = p.parse_args(argv)
    db = pathlib.Path(f"{args.me}.db")

    if args.cmd == "add":
        with open_db(db) as con:
            con.execute("INSERT INTO tasks(uid, title) VALUES (lower(hex(randomblob(8))), ?)", (args.title,))
        return 0

    open_db(db).close()
    if not (args.repo / ".git").exists():
        args.repo.mkdir(parents=True, exist_ok=True)
        git(args.repo, "init", "-q")
    # My dump: exact and deterministic, so git stores only what changed.
    mine = args.repo / f"{args.me}.sql"
    litevault.backup(db, output=mine, format="sql", compression="none", overwrite=True)
    git(args.repo, "add", mine.name)
    git(args.repo, "-c", "user.name=" + args.me, "-c", "user.email=" + args.me + "@example.invalid",
        "commit", "-q", "--allow-empty", "-m", f"{args.me}: sync")
    # The others' dumps, merged in; `uid` identifies a task across machines.
    keys = pathlib.Path(f"{args.me}.keys")
    keys.write_text('tasks = ["uid"]\n')
    theirs = sorted(str(f) for f in args.repo.glob("*.sql") if f != mine)
    if theirs:
        r = litevault.merge(theirs, db, keys=keys, no_safety_copy=True)
        print(f"merged {len(theirs)} dump(s): {r.to_dict().get('inserted', r.to_dict())}")
    for (title,) in open_db(db).execute("SELECT title FROM tasks ORDER BY title"):
        print(" -", title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
