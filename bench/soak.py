#!/usr/bin/env python3
"""Soak test: "nothing lost" under a continuous writer and kill -9 at random instants.

    python3 bench/soak.py [--iterations 60] [--size-mb 20] [--seed N] [--work DIR]

A bank database (accounts whose balances always sum to 100,000; a log whose row count always
equals a counter) in WAL mode gets a writer process committing transfers as fast as it can.
Each iteration runs one of: backup, backup --incremental, restore --overwrite of the newest
archive over a target database, merge of the newest archive into another database; about
two thirds of the runs are killed with SIGKILL at a random instant. After each iteration:
- every archive under a final name in the backup directory verifies (`verify --quick`; an
  incremental is composed with its chain);
- the restore target is an intact SQLite database whose invariants hold (wholly old or wholly
  new: never a mix); the merge target is intact and never loses rows (merge is a union of rows,
  one transaction, so the bank's sums do not hold there).
Prints the faults survived and the databases lost or wrong (must be 0). Not part of CI.
"""

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

WRITER = r"""
import sqlite3, sys, os, random
db, stop = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, timeout=60, isolation_level=None)
i = 0
while not os.path.exists(stop):
    i += 1
    a, b = i % 100 + 1, (i * 7) % 100 + 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE acct SET bal = bal - 1 WHERE id = ?", (a,))
    c.execute("UPDATE acct SET bal = bal + 1 WHERE id = ?", (b,))
    c.execute("INSERT INTO log(a, b, note) VALUES (?, ?, hex(randomblob(64)))", (a, b))
    c.execute("UPDATE counter SET n = n + 1")
    c.execute("COMMIT")
"""


def make_bank(path: str, size_mb: int) -> None:
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript(f"""
        PRAGMA journal_mode=WAL;
        CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INT NOT NULL);
        WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 100)
        INSERT INTO acct SELECT v, 1000 FROM s;
        CREATE TABLE log(id INTEGER PRIMARY KEY, a INT, b INT, note TEXT);
        CREATE TABLE counter(n INT NOT NULL); INSERT INTO counter VALUES (0);
        CREATE TABLE bulk(id INTEGER PRIMARY KEY, data BLOB);
        WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < {size_mb * 256})
        INSERT INTO bulk(data) SELECT randomblob(4000) FROM s;
    """)
    c.close()


def intact(path: str) -> tuple[str | None, int]:
    """(what is wrong, or None; the number of log rows) for a merge target: merge is a union
    of rows (same ids with other content come in under new ids), so the bank's sums do not hold
    there; it must stay intact and, being one transaction, never lose rows."""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        ok = c.execute("PRAGMA quick_check").fetchone()[0]
        rows = c.execute("SELECT count(*) FROM log").fetchone()[0]
        c.close()
    except sqlite3.Error as e:
        return f"unreadable: {e}", 0
    return (None if ok == "ok" else f"quick_check: {ok}"), rows


def invariants(path: str) -> str | None:
    """None when the database is intact and consistent, else what is wrong."""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        ok = c.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            return f"quick_check: {ok}"
        total = c.execute("SELECT sum(bal) FROM acct").fetchone()[0]
        n = c.execute("SELECT n FROM counter").fetchone()[0]
        logged = c.execute("SELECT count(*) FROM log").fetchone()[0]
        c.close()
    except sqlite3.Error as e:
        return f"unreadable: {e}"
    if total != 100_000:
        return f"money: {total}"
    if n != logged:
        return f"log {logged} != counter {n}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--size-mb", type=int, default=20)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--work", default=os.path.join(HERE, "work-soak"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    lv = os.path.join(REPO, "target/release/litevault")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    db = os.path.join(args.work, "bank.db")
    backups = os.path.join(args.work, "backups")
    target = os.path.join(args.work, "target.db")
    merged = os.path.join(args.work, "merged.db")
    make_bank(db, args.size_mb)
    shutil.copyfile(db, target)
    env = dict(os.environ, LITEVAULT_DIR=backups, LITEVAULT_STATE_DIR=os.path.join(args.work, "state"))
    subprocess.run([lv, "backup", db, "--dir", backups, "-q"], env=env, check=True)
    # The merge target starts as a copy of the first backup (merging more of the same history).
    newest = sorted(f for f in os.listdir(backups) if not f.startswith("."))[-1]
    subprocess.run([lv, "restore", os.path.join(backups, newest), merged, "-q"], env=env, check=True)
    stop = os.path.join(args.work, "stop")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db, stop])
    verified: set[str] = set()
    merged_rows = intact(merged)[1]
    killed = finished = failed_runs = 0
    wrong: list[str] = []
    t0 = time.time()
    try:
        for it in range(args.iterations):
            op = rng.choice(["backup", "incremental", "restore", "merge"])
            finals = sorted(f for f in os.listdir(backups) if not f.startswith("."))
            newest = os.path.join(backups, finals[-1])
            cmd = {
                "backup": [lv, "backup", db, "--dir", backups],
                "incremental": [lv, "backup", db, "--dir", backups, "--incremental"],
                "restore": [lv, "restore", newest, target, "--overwrite", "--quick"],
                "merge": [lv, "merge", newest, merged, "--no-safety-copy"],
            }[op]
            p = subprocess.Popen(cmd + ["-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            kill = rng.random() < 2 / 3
            if kill:
                time.sleep(rng.uniform(0.0, 0.35))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    killed += 1
            _, err = p.communicate()
            if p.returncode == 0:
                finished += 1
            elif p.returncode != -signal.SIGKILL:
                failed_runs += 1
                print(f"  iteration {it} {op}: exit {p.returncode}: {err.decode(errors='replace').strip()[:300]}")
            # Every archive under a final name verifies.
            for f in sorted(os.listdir(backups)):
                if f.startswith(".") or f in verified:
                    continue
                r = subprocess.run([lv, "verify", os.path.join(backups, f), "--quick", "--json"], env=env,
                                   capture_output=True)
                if r.returncode != 0:
                    wrong.append(f"archive {f}: {r.stdout.decode(errors='replace')[:300]}")
                verified.add(f)
            why = invariants(target)
            if why:
                wrong.append(f"iteration {it} ({op}): restore target {why}")
            why, rows = intact(merged)
            if why or rows < merged_rows:
                wrong.append(f"iteration {it} ({op}): merge target {why or f'lost rows ({merged_rows} -> {rows})'}")
            merged_rows = max(merged_rows, rows)
            if (it + 1) % 10 == 0:
                print(f"  {it + 1} iterations, {killed} killed, {len(verified)} archives verified, "
                      f"{len(wrong)} wrong, {time.time() - t0:.0f} s")
    finally:
        open(stop, "w").close()
        writer.wait(30)
    print(json.dumps({
        "iterations": args.iterations, "seed": args.seed, "killed_by_sigkill": killed,
        "finished": finished, "failed_runs": failed_runs, "archives_verified": len(verified),
        "databases_lost_or_wrong": len(wrong), "seconds": round(time.time() - t0, 1),
    }, indent=2))
    for w in wrong:
        print("WRONG:", w)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
