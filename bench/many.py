#!/usr/bin/env python3
"""Many replicated databases in one daemon: memory, threads, CPU and lag.

    python3 bench/many.py [--databases 100] [--seconds 30] [--work DIR] [--s3] [--json [PATH]]

Makes N small WAL databases (200 rows each), a `litevault serve` configuration with
`replicate = "1s"` for each (each to its own directory), starts target/release/litevault serve,
waits until every replicator has shipped its first base, then runs a writer that commits one row
to a random database every 5 ms for --seconds (then 3 s for the last shipments, counted with
the writing). Sampled every second: the daemon's RSS (VmRSS),
threads, CPU seconds (utime + stime); every 2 s: each database's replication lag from
/api/backup/status. Then an idle period as long, the daemon stopped (SIGTERM: the last shipment),
and three random databases restored from their locations and compared with their sources.

With --s3 the locations are prefixes of one bucket in SeaweedFS on loopback (bench/s3.py's
server), and the S3 requests the daemon sent are read from its /metrics
(`litevault_s3_requests_total`): PUT + POST (what object storage bills as writes) per second while
writing and while idle. --work is emptied first: it must be empty, missing, or a previous run's.

Issue 22's goal for this shape: <= 32 MB of memory for 100 databases, lag p99 <= 2 s.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    return int(status["VmRSS"].split()[0]) * 1024, int(status["Threads"]), cpu


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/backup/status", timeout=5) as r:
        return json.load(r)


def lags(st):
    out = []
    for db in st.get("databases", []):
        rep = db.get("replication")
        if rep is not None and rep.get("lag_seconds") is not None:
            out.append(rep["lag_seconds"])
    return out


def shipped_bases(st):
    n = 0
    for db in st.get("databases", []):
        rep = db.get("replication") or {}
        s = rep.get("status") or rep
        if (s.get("bases") or 0) >= 1:
            n += 1
    return n


def s3_writes(port):
    """PUT + POST requests the daemon has sent (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    n = 0
    for line in text.splitlines():
        if line.startswith('litevault_s3_requests_total{kind="PUT"}') or line.startswith(
                'litevault_s3_requests_total{kind="POST"}'):
            n += int(float(line.rsplit(" ", 1)[1]))
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--databases", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--work", default=os.path.join(HERE, "work", "many"))
    ap.add_argument("--litevault", default=os.path.join(ROOT, "target", "release", "litevault"))
    ap.add_argument("--s3", action="store_true", help="locations in SeaweedFS on loopback")
    ap.add_argument("--json", nargs="?", const="", default=None)
    args = ap.parse_args(argv)
    if os.path.isdir(args.work) and os.listdir(args.work) and not os.path.exists(
            os.path.join(args.work, "litevault.toml")):
        raise SystemExit(f"--work {args.work} holds other files: give an empty or new directory")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    weed = None
    env = dict(os.environ)
    if args.s3:
        sys.path.insert(0, HERE)
        import s3  # noqa: E402
        weed = s3.Weed(args.work)
        import atexit
        atexit.register(weed.stop)
        env = weed.env()

    def location(i):
        return f"s3://{weed.bucket}/many/db{i:03}" if weed else f"{args.work}/loc{i:03}"
    rng = random.Random(7)

    dbs = []
    conf = [f'listen = "127.0.0.1:{(port := free_port())}"', f'state_dir = "{args.work}/state"', ""]
    for i in range(args.databases):
        path = os.path.join(args.work, f"db{i:03}.db")
        con = sqlite3.connect(path)
        con.executescript("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);")
        con.executemany("INSERT INTO t(body) VALUES (?)", [(f"row {j} " + "x" * 100,) for j in range(200)])
        con.commit()
        con.close()
        dbs.append(path)
        conf += ["[[databases]]", f'name = "db{i:03}"', f'path = "{path}"',
                 f'location = "{location(i)}"', 'replicate = "1s"', ""]
    cfg = os.path.join(args.work, "litevault.toml")
    with open(cfg, "w") as f:
        f.write("\n".join(conf))

    err = open(os.path.join(args.work, "serve.log"), "w")
    started = time.perf_counter()
    daemon = subprocess.Popen([args.litevault, "serve", "--config", cfg], stdout=err, stderr=err, env=env)
    samples = []
    try:
        # Every first base shipped.
        deadline = time.time() + 300
        while True:
            try:
                st = status(port)
                if shipped_bases(st) >= args.databases:
                    break
            except OSError:
                pass
            if time.time() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon did not ship every first base (see serve.log)")
            time.sleep(0.5)
        ready_s = time.perf_counter() - started
        rss0, threads0, cpu0 = proc_sample(daemon.pid)
        log(f"{args.databases} first bases shipped in {ready_s:.1f} s; RSS {rss0 / 2**20:.0f} MiB, {threads0} threads")

        stop = threading.Event()
        commits = [0]

        def writer():
            cons = {}
            while not stop.is_set():
                path = rng.choice(dbs)
                con = cons.get(path) or cons.setdefault(path, sqlite3.connect(path))
                con.execute("INSERT INTO t(body) VALUES (?)", (f"w {commits[0]}",))
                con.commit()
                commits[0] += 1
                time.sleep(0.005)
            for c in cons.values():
                c.close()

        lag_samples = []

        def sample(phase, seconds):
            t_end = time.time() + seconds
            i = 0
            while time.time() < t_end:
                rss, threads, cpu = proc_sample(daemon.pid)
                samples.append({"phase": phase, "rss": rss, "threads": threads, "cpu": cpu})
                if phase == "writing" and i % 2 == 0:
                    lag_samples.extend(lags(status(port)))
                i += 1
                time.sleep(1)

        def objects():
            if weed:
                return s3_writes(port)
            return sum(len(os.listdir(os.path.join(args.work, f"loc{i:03}"))) for i in range(args.databases))

        objects0 = objects()
        t = threading.Thread(target=writer)
        t.start()
        cpu_w0 = proc_sample(daemon.pid)[2]
        sample("writing", args.seconds)
        stop.set()
        t.join()
        cpu_w1 = proc_sample(daemon.pid)[2]
        # What was committed last is shipped within an interval: counted with the writing.
        time.sleep(3)
        objects1 = objects()
        cpu_w1 = proc_sample(daemon.pid)[2]
        sample("idle", args.seconds)
        cpu_i1 = proc_sample(daemon.pid)[2]
        objects2 = objects()
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()

    # Three databases restored and compared.
    checked = []
    for path in rng.sample(dbs, 3):
        i = dbs.index(path)
        out = os.path.join(args.work, f"restored{i:03}.db")
        subprocess.run([args.litevault, "restore", "--latest", "--dir", location(i),
                        "--name", f"db{i:03}", out], check=True, capture_output=True, env=env)
        a = sqlite3.connect(path).execute("SELECT count(*), max(id) FROM t").fetchone()
        b = sqlite3.connect(out).execute("SELECT count(*), max(id) FROM t").fetchone()
        checked.append({"db": os.path.basename(path), "source": a, "restored": b, "equal": a == b})

    def q(vals, p):
        vals = sorted(vals)
        return vals[min(len(vals) - 1, int(p * len(vals)))] if vals else None

    w = [s for s in samples if s["phase"] == "writing"]
    idle = [s for s in samples if s["phase"] == "idle"]
    result = {
        "databases": args.databases,
        "first_bases_s": round(ready_s, 1),
        "rss_after_start_mib": round(rss0 / 2**20, 1),
        "rss_writing_median_mib": round(statistics.median(s["rss"] for s in w) / 2**20, 1),
        "rss_peak_mib": round(max(s["rss"] for s in samples) / 2**20, 1),
        "rss_idle_end_mib": round(idle[-1]["rss"] / 2**20, 1) if idle else None,
        "threads": max(s["threads"] for s in samples),
        "commits": commits[0],
        "cpu_writing_s": round(cpu_w1 - cpu_w0, 2),
        "objects_per_s_writing": round((objects1 - objects0) / args.seconds, 1),
        "objects_per_s_idle": round((objects2 - objects1) / args.seconds, 2),
        "s3": bool(weed),
        "cpu_idle_s": round(cpu_i1 - cpu_w1, 2),
        "seconds": args.seconds,
        "lag_p50_s": q(lag_samples, 0.5),
        "lag_p99_s": q(lag_samples, 0.99),
        "lag_max_s": max(lag_samples) if lag_samples else None,
        "restored": checked,
    }
    print(f"{args.databases} databases, writer {commits[0]} commits in {args.seconds:.0f} s")
    print(f"RSS after start {result['rss_after_start_mib']} MiB, writing {result['rss_writing_median_mib']} MiB (median), peak {result['rss_peak_mib']} MiB, at the end of the idle period {result['rss_idle_end_mib']} MiB; {result['threads']} threads")
    print(f"CPU {result['cpu_writing_s']} s writing, {result['cpu_idle_s']} s idle ({args.seconds:.0f} s each)")
    what = "S3 PUT + POST requests" if weed else "objects written"
    print(f"{what}: {result['objects_per_s_writing']} per second while writing, "
          f"{result['objects_per_s_idle']} per second idle")
    print(f"lag p50 {result['lag_p50_s']} s, p99 {result['lag_p99_s']} s, max {result['lag_max_s']} s")
    print("restored: " + ", ".join(f"{c['db']} {'equal' if c['equal'] else 'DIFFERENT'}" for c in checked))
    ok_mem = result["rss_peak_mib"] * 2**20 <= 32e6 * args.databases / 100
    print(f"{'PASS' if ok_mem else 'FAIL'}: memory <= 32 MB per 100 databases ({result['rss_peak_mib']} MiB)")
    print(f"{'PASS' if (result['lag_p99_s'] or 0) <= 2 else 'FAIL'}: lag p99 <= 2 s")
    if args.json is not None:
        with open(args.json or os.path.join(args.work, "many.json"), "w") as f:
            json.dump(result, f, indent=2)
    return 0 if all(c["equal"] for c in checked) else 1


if __name__ == "__main__":
    sys.exit(main())
