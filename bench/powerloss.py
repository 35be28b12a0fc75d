#!/usr/bin/env python3
"""Power loss of the location's machine while replicating, under LazyFS (by hand).

    python3 bench/powerloss.py --lazyfs PATH/TO/lazyfs [--rounds 8] [--work DIR] [--json PATH]

LazyFS (https://github.com/dsrhaslab/lazyfs, the FUSE file system Jepsen uses) keeps every
write in its own page cache until it is fsynced; its `lazyfs::clear-cache` command drops what
was not, as a power loss would. It is not in CI (it builds from GitHub, which CI cannot reach):
build it by hand, with Debian's packages instead of the downloads its CMake files make
(`apt-get install cmake g++ libfuse3-dev fuse3 libtoml11-dev libspdlog-dev`; in
libs/libpcache/CMakeLists.txt `find_package(toml11)` and `find_package(spdlog)` in place of the
FetchContent blocks, linking `spdlog::spdlog`; in lazyfs/CMakeLists.txt the same two packages
linked to the executable), and give it a statfs that passes through to the backing file system
(a static `lfs_statfs` in the LazyFS class calling statvfs(2)): without it free space reads 0
and litevault refuses to write. Then `libs/libpcache/build.sh` and `lazyfs/build.sh`; --lazyfs
is the built `lazyfs/build/lazyfs`. Needs root (FUSE).

Each round, on a fresh LazyFS mount (the location inside it, the database outside: the
question is what the location holds after its machine loses power):

1. a WAL database; `litevault replicate DB --to MOUNT/loc --interval 200ms` (every other round
   with `--base-every 1s`, so that the power goes out while bases are written too) until its
   first base is there;
2. a writer commits numbered rows as fast as it can; after a random 1-4 s the replicator is
   killed (SIGKILL) and at once LazyFS drops everything not fsynced (the power loss); the
   writer stops;
3. the location must hold a prefix: `restore --latest` succeeds and gives rows 1..k without a
   hole (k <= the rows committed), `verify --replica` exits 0;
4. the replicator is started again on the same location (it resumes), more rows are written, it
   is stopped with SIGTERM: `restore --latest` equals the database row for row, and `verify
   --replica` exits 0.

Printed: per round, rows committed at the power loss, rows restored after it (the loss, in rows
and in seconds of the writer), and whether every check passed; a summary at the end. The exit
code is 1 when any check failed.
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
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class LazyFS:
    """One mount of LazyFS over a backing directory, with its faults FIFO."""

    def __init__(self, binary, work):
        self.mnt = os.path.join(work, "mnt")
        self.root = os.path.join(work, "root")
        self.fifo = os.path.join(work, "faults.fifo")
        for d in (self.mnt, self.root):
            os.makedirs(d, exist_ok=True)
        config = os.path.join(work, "lazyfs.toml")
        with open(config, "w") as f:
            f.write(
                f'[faults]\nfifo_path="{self.fifo}"\n[cache]\napply_eviction=false\n'
                '[cache.simple]\ncustom_size="512mb"\nblocks_per_page=1\n'
                '[filesystem]\nlog_all_operations=false\nlogfile=""\n'
            )
        self.log = open(os.path.join(work, "lazyfs.log"), "w")
        self.proc = subprocess.Popen(
            [binary, self.mnt, "--config-path", config, "-o", "allow_other", "-o", "modules=subdir",
             "-o", f"subdir={self.root}", "-f"],
            stdout=self.log, stderr=subprocess.STDOUT)
        t = time.time()
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.time() - t > 60:
                raise SystemExit(f"LazyFS did not mount (see {self.log.name})")
            time.sleep(0.1)

    def power_loss(self):
        """Drops every write not fsynced yet."""
        with open(self.fifo, "w") as f:
            f.write("lazyfs::clear-cache\n")
        time.sleep(0.5)  # the command is read and applied by LazyFS's own thread

    def close(self):
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def sizes(d):
    """{path: size} of every file under `d`."""
    out = {}
    for dirpath, _, files in os.walk(d):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                out[p] = os.path.getsize(p)
            except OSError:
                pass
    return out


def in_flight(loc, timeout):
    """Waits (up to `timeout` s) until a hidden temp file with bytes in it is in `loc`."""
    t = time.time()
    while time.time() - t < timeout:
        for dirpath, _, files in os.walk(loc):
            for f in files:
                if f.startswith("."):
                    try:
                        if os.path.getsize(os.path.join(dirpath, f)) > 0:
                            return True
                    except OSError:
                        pass
        time.sleep(0.001)
    return False


def lv(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True)


def rows(db):
    con = sqlite3.connect(db)
    try:
        count, top = con.execute("SELECT count(*), coalesce(max(n), 0) FROM t").fetchone()
        return count, top, con.execute("SELECT n, at, pad FROM t ORDER BY n").fetchall()
    finally:
        con.close()


def start(binary, db, loc, extra):
    proc = subprocess.Popen(
        [binary, "--json", "replicate", db, "--to", loc, "--interval", "200ms", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while not (os.path.isdir(loc) and any(".tar.zst" in n for n in os.listdir(loc))):
        if proc.poll() is not None:
            raise SystemExit(f"replicate exited: {proc.stderr.read()}")
        if time.time() - t > 60:
            raise SystemExit("no base within 60 s")
        time.sleep(0.02)
    return proc


class Writer(threading.Thread):
    """Commits numbered rows (number, commit time) until told to stop."""

    def __init__(self, db, first):
        super().__init__(daemon=True)
        self.db, self.next, self.stop, self.times = db, first, threading.Event(), {}

    def run(self):
        con = sqlite3.connect(self.db, isolation_level=None, timeout=60)
        pad = "x" * 200
        while not self.stop.is_set():
            at = time.time()
            con.execute("INSERT INTO t VALUES (?, ?, ?)", (self.next, int(at * 1000), pad))
            self.times[self.next] = at
            self.next += 1
        con.close()


def one_round(args, i, rng):
    work = os.path.join(args.work, f"round-{i}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fs = LazyFS(args.lazyfs, work)
    checks, out = [], {"round": i}
    try:
        db = os.path.join(work, "app.db")
        con = sqlite3.connect(db)
        con.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t(n INTEGER PRIMARY KEY, at INTEGER, pad TEXT);")
        con.close()
        loc = os.path.join(fs.mnt, "loc")
        extra = ["--base-every", "1s"] if i % 2 else []
        out["base_every"] = bool(extra)
        rep = start(args.binary, db, loc, extra)
        w = Writer(db, 1)
        w.start()
        time.sleep(rng.uniform(1.0, 4.0))
        # The cut comes while an object is being written when one starts within 2 s (a hidden
        # temp file in the location with bytes in it), or at that instant otherwise.
        out["in_flight"] = in_flight(loc, 2.0)
        rep.send_signal(signal.SIGKILL)
        at_loss = time.time()
        rep.wait()
        before = sizes(loc)
        # A control beside the location, written and not fsynced: the power loss must take it
        # (else the harness, not litevault, is what the round measured).
        control = os.path.join(fs.mnt, "control.bin")
        with open(control, "wb") as f:
            f.write(os.urandom(65536))
        fs.power_loss()
        after = sizes(loc)
        checks.append(("the power loss took the control's unsynced bytes",
                       os.path.getsize(control) < 65536, f"{os.path.getsize(control)} bytes left"))
        # What the power loss took: files (or parts) written and not fsynced. litevault's own
        # objects are fsynced before they are named, so these are the files it was writing.
        out["files_cut"] = sum(1 for p, n in before.items() if after.get(p, -1) != n)
        out["bytes_dropped"] = sum(n - max(after.get(p, 0), 0) for p, n in before.items())
        committed = w.next - 1
        w.stop.set()
        w.join()
        out["committed_at_loss"] = committed
        # The location after the power loss: a prefix, whole.
        target = os.path.join(work, "after-loss.db")
        r = lv(args.binary, "restore", "--latest", "--dir", loc, "--name", "app", target, "--json")
        checks.append(("restore --latest after the loss", r.returncode == 0, r.stderr.strip()[-300:]))
        if r.returncode == 0:
            count, top, _ = rows(target)
            prefix = count == top and top <= committed
            checks.append(("a prefix of what was committed", prefix, f"{count} rows, max {top}, committed {committed}"))
            out["restored_after_loss"] = top
            out["lost_rows"] = committed - top
            last = w.times.get(top)
            out["lost_seconds"] = round(at_loss - last, 3) if last else None
        v = lv(args.binary, "verify", loc, "--replica", "--name", "app")
        checks.append(("verify --replica after the loss", v.returncode == 0, (v.stdout + v.stderr).strip()[-300:]))
        # The replicator resumes on the same location.
        rep = start(args.binary, db, loc, extra)
        w2 = Writer(db, w.next)
        w2.start()
        time.sleep(1.5)
        w2.stop.set()
        w2.join()
        rep.send_signal(signal.SIGTERM)
        _, err = rep.communicate(timeout=120)
        checks.append(("the resumed replicator stops cleanly", rep.returncode == 0, err.strip()[-300:]))
        final = os.path.join(work, "final.db")
        r = lv(args.binary, "restore", "--latest", "--dir", loc, "--name", "app", final, "--json")
        checks.append(("restore --latest after resuming", r.returncode == 0, r.stderr.strip()[-300:]))
        if r.returncode == 0:
            same = rows(final)[2] == rows(db)[2]
            checks.append(("equal to the database, row for row", same, f"{rows(final)[1]} vs {rows(db)[1]} rows"))
        v = lv(args.binary, "verify", loc, "--replica", "--name", "app")
        checks.append(("verify --replica after resuming", v.returncode == 0, (v.stdout + v.stderr).strip()[-300:]))
    finally:
        fs.close()
    out["checks"] = [{"check": c, "ok": ok, "detail": d} for c, ok, d in checks]
    out["ok"] = all(ok for _, ok, _ in checks)
    if out["ok"] and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lazyfs", required=True, help="the built LazyFS executable")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--work", default=os.path.join(HERE, "work", "powerloss"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "litevault"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep every round's directory")
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("FUSE mounts need root here")
    rng = random.Random(args.seed)
    os.makedirs(args.work, exist_ok=True)
    results = []
    for i in range(args.rounds):
        r = one_round(args, i, rng)
        results.append(r)
        bad = [c for c in r["checks"] if not c["ok"]]
        log(f"round {i}{' (base every 1s)' if r['base_every'] else ''}: committed {r.get('committed_at_loss')}, "
            f"restored after the loss {r.get('restored_after_loss')} (lost {r.get('lost_rows')} rows, "
            f"{r.get('lost_seconds')} s; {'in flight, ' if r.get('in_flight') else ''}{r.get('files_cut')} files cut, {r.get('bytes_dropped')} bytes dropped): {'ok' if r['ok'] else 'FAILED ' + json.dumps(bad)}")
    ok = all(r["ok"] for r in results)
    lost = sorted(r["lost_seconds"] for r in results if r.get("lost_seconds") is not None)
    if lost:
        log(f"loss at the power cut: median {lost[len(lost) // 2]} s, max {lost[-1]} s over {len(lost)} rounds")
    log("PASS: every round's location held a whole prefix and resumed" if ok else "FAIL")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
