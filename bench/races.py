#!/usr/bin/env python3
"""Concurrency soak: several litevault processes at once on one location, checked by invariants.

    python3 bench/races.py [--rounds 40] [--procs 6] [--size-mb 4] [--seed N] [--s3] [--work DIR]

A database in WAL mode gets a writer committing while, each round, `--procs` litevault processes
start at the same instant on one location (a local directory, or with --s3 a prefix in a
SeaweedFS bucket on loopback, started by this script): a random mix of `backup`, `backup
--incremental`, `prune --keep-last 1|2`, `copy` of the newest archive into a second location,
`restore --latest` and `verify`; about one run in five is killed with SIGKILL at a random instant.
After each round the invariants that must hold whatever the interleaving are checked:

- every archive a run reported as written is still there and verifies (an incremental is
  composed with its chain), or a prune reported deleting it;
- once a restorable backup existed, one still does (`restore --latest` succeeds and gives an
  intact database);
- no run that exited by itself failed (prune may refuse to delete everything; restore may find
  nothing yet), and none panicked;
- after a clean prune no temp file is left in a local location.

Prints rounds, runs by kind, kills and violations (must be 0). Exit 1 on a violation. Not part
of CI (the integration test `races::a_random_mix_of_runs_on_one_location_keeps_every_invariant`
is its short form).
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

WRITER = r"""
import sqlite3, sys, os
db, stop = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, timeout=60, isolation_level=None)
i = 0
while not os.path.exists(stop):
    i += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE t SET v = v + 1 WHERE id = ?", (i % 1000 + 1,))
    c.execute("INSERT INTO log(note) VALUES (hex(randomblob(32)))")
    c.execute("COMMIT")
"""


def make_db(path: str, size_mb: int) -> None:
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript(f"""
        PRAGMA journal_mode=WAL;
        CREATE TABLE t(id INTEGER PRIMARY KEY, v INT NOT NULL);
        WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 1000)
        INSERT INTO t SELECT x, 0 FROM s;
        CREATE TABLE log(id INTEGER PRIMARY KEY, note TEXT);
        CREATE TABLE bulk(id INTEGER PRIMARY KEY, data BLOB);
        WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < {size_mb * 256})
        INSERT INTO bulk SELECT x, randomblob(4000) FROM s;
    """)
    c.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--procs", type=int, default=6)
    ap.add_argument("--size-mb", type=int, default=4)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--s3", action="store_true", help="the location is a prefix in a SeaweedFS bucket")
    ap.add_argument("--work", default=None)
    ap.add_argument("--litevault", default=os.path.join(REPO, "target/release/litevault"))
    args = ap.parse_args(argv)
    lv = args.litevault
    if not os.path.exists(lv):
        raise SystemExit(f"{lv} is missing: cargo build --release first")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    work = args.work or tempfile.mkdtemp(prefix="litevault-races-")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = dict(os.environ, LITEVAULT_STATE_DIR=os.path.join(work, "state"))
    weed = None
    if args.s3:
        from s3 import Weed  # bench/s3.py
        weed = Weed(work)
        env.update(weed.env())
        loc, copies = f"s3://{weed.bucket}/races", f"s3://{weed.bucket}/copies"
    else:
        loc, copies = os.path.join(work, "bk"), os.path.join(work, "copies")
        os.makedirs(loc)
        os.makedirs(copies)
    db = os.path.join(work, "app.db")
    make_db(db, args.size_mb)
    stop = os.path.join(work, "stop")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, db, stop])

    written, deleted, violations = set(), set(), []
    runs, kills, had_restorable = {}, 0, False
    n = 0

    def lv_json(argv):
        p = subprocess.run([lv, *argv, "--json"], env=env, capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    def names():
        code, out, err = lv_json(["list", "--dir", loc])
        if code != 0:
            violations.append(f"list failed: {err.strip()}")
            return []
        return [a["path"] for a in json.loads(out)]

    started = time.time()
    try:
        for rnd in range(args.rounds):
            restorable_at_start = had_restorable
            procs = []
            for _ in range(args.procs):
                kind = rng.choice(["full", "incremental", "incremental", "prune", "copy", "restore", "verify"])
                n += 1
                if kind == "full":
                    argv = ["backup", db, "--dir", loc]
                elif kind == "incremental":
                    argv = ["backup", db, "--dir", loc, "--incremental"]
                elif kind == "prune":
                    argv = ["prune", "--dir", loc, "--keep-last", str(rng.choice([1, 2]))]
                elif kind == "copy":
                    current = names()
                    if not current:
                        kind, argv = "verify", ["verify", db]
                    else:
                        argv = ["copy", rng.choice(current), copies]
                elif kind == "restore":
                    argv = ["restore", "--latest", "--dir", loc, "--name", "app", os.path.join(work, f"r{n}.db")]
                else:
                    argv = ["verify", db]
                runs[kind] = runs.get(kind, 0) + 1
                # A killed prune cannot report what it deleted: prunes are not killed, so that
                # every deletion is accounted for.
                kill_at = time.time() + rng.uniform(0, 0.6) if kind != "prune" and rng.random() < 0.2 else None
                p = subprocess.Popen([lv, *argv, "--json"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                procs.append((kind, p, kill_at))
            for kind, p, kill_at in procs:
                if kill_at is not None:
                    try:
                        p.wait(max(0.0, kill_at - time.time()))
                    except subprocess.TimeoutExpired:
                        p.send_signal(signal.SIGKILL)
                        p.communicate()
                        kills += 1
                        continue
                out, err = p.communicate()
                if "panicked" in err:
                    violations.append(f"round {rnd}: {kind} panicked: {err.strip()}")
                code = p.returncode
                if kind in ("full", "incremental"):
                    if code != 0:
                        violations.append(f"round {rnd}: {kind} failed ({code}): {err.strip()}")
                    else:
                        written.add(json.loads(out)["archive"])
                        had_restorable = True
                elif kind == "prune":
                    if code == 0:
                        deleted.update(json.loads(out)["deleted"])
                    elif "every backup" not in err:
                        violations.append(f"round {rnd}: prune failed ({code}): {err.strip()}")
                elif kind == "restore":
                    if code != 0 and not (code == 1 and "no such file" in err and not restorable_at_start):
                        violations.append(f"round {rnd}: restore --latest failed ({code}): {err.strip()}")
                elif kind == "copy":
                    # Pruned meanwhile, or copied already (copy never replaces): both fine.
                    if code != 0 and not ((code == 1 and "no such file" in err)
                                          or (code == 4 and "already exists" in err)):
                        violations.append(f"round {rnd}: copy failed ({code}): {err.strip()}")
                elif code != 0:
                    violations.append(f"round {rnd}: {kind} failed ({code}): {err.strip()}")
            # Invariants.
            present = set(names())
            for w in sorted(written):
                if w not in present and w not in deleted:
                    violations.append(f"round {rnd}: {w} was reported written; it is gone and no prune deleted it")
                    written.discard(w)
                elif w in present:
                    code, _, err = lv_json(["verify", w, "--quick"])
                    if code != 0:
                        violations.append(f"round {rnd}: {w} was reported written and does not verify: {err.strip()}")
            if had_restorable:
                target = os.path.join(work, "check.db")
                code, _, err = lv_json(["restore", "--latest", "--dir", loc, "--name", "app", target, "--overwrite"])
                if code != 0:
                    violations.append(f"round {rnd}: no restorable backup: restore --latest: {err.strip()}")
            print(f"round {rnd + 1}/{args.rounds}: {len(present)} backups, violations so far {len(violations)}",
                  file=sys.stderr)
        if not args.s3:
            lv_json(["prune", "--dir", loc, "--keep-last", "1000"])
            temps = [f for f in os.listdir(loc) if f.startswith(".")]
            if temps:
                violations.append(f"temp files left after a clean prune: {temps}")
    finally:
        open(stop, "w").close()
        writer.wait()
        if weed:
            weed.stop()
    took = time.time() - started
    where = "S3 (SeaweedFS on loopback)" if args.s3 else "local directory"
    print(f"seed {seed}, {where}: {args.rounds} rounds x {args.procs} processes = {n} runs "
          f"({', '.join(f'{k} {v}' for k, v in sorted(runs.items()))}), {kills} killed with SIGKILL, "
          f"{len(written)} archives reported written, {len(deleted)} deleted by prunes, "
          f"{took:.0f} s; violations: {len(violations)}")
    for v in violations:
        print("  VIOLATION", v)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
