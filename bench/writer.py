#!/usr/bin/env python3
"""The application's writes during a litevault backup (issue: "a backup must not stall writes").

Two writers on a copy of the benchmark's 1 GiB WAL database (bench/run.py generates it):
  light  the benchmark's writer: one INSERT + one UPDATE per transaction (~4,000 commits/s);
  cpu    a CPU-bound writer: back-to-back one-row INSERTs, autocommit (~16,000 commits/s).
Each runs alone for --seconds, then again while litevault backs the database up in a loop
(`litevault backup DB -o OUT` plus the extra arguments of a variant). Printed per writer and
variant: commits/s and its ratio to the writer alone, p99 and worst commit, backups done.

  python3 bench/writer.py                               # default variant only
  python3 bench/writer.py --variant old="--no-checkpoint --priority normal --threads 0"
  python3 bench/writer.py --json bench/work/writer.json

Targets: worst commit during a backup <= 2x the worst commit alone; commit rate >= 80%.
"""

import argparse, array, bisect, json, os, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (the generator and the light writer)

CPU_WRITER = r"""
import array, os, sqlite3, sys, time
db, out, stopfile, max_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
con = sqlite3.connect(db, isolation_level=None, timeout=60)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
con.execute("CREATE TABLE IF NOT EXISTS ticks(id INTEGER PRIMARY KEY, t REAL, v TEXT)")
ends = array.array("d"); lat = array.array("d")
mono = time.monotonic; deadline = mono() + max_s; exists = os.path.exists
ins = "INSERT INTO ticks(t, v) VALUES (?, 'tick')"
i = 0
while True:
    t = mono()
    if t >= deadline or ((i & 255) == 0 and exists(stopfile)):
        break
    con.execute(ins, (t,))
    e = mono()
    ends.append(e); lat.append(e - t)
    i += 1
con.close()
with open(out, "wb") as f:
    array.array("q", [len(ends)]).tofile(f); ends.tofile(f); lat.tofile(f)
"""

WRITERS = {"light": bench.PY_WRITER, "cpu": CPU_WRITER}


def stats(ends, lat, windows):
    n, dur, worst, lats = 0, 0.0, 0.0, []
    for s, e in windows:
        dur += e - s
        lo, hi = bisect.bisect_left(ends, s), bisect.bisect_right(ends, e)
        n += hi - lo
        lats.extend(lat[lo:hi])
        i = lo
        while i < len(ends) and ends[i] - lat[i] <= e:
            worst = max(worst, lat[i])
            i += 1
    lats.sort()
    p99 = lats[int(0.99 * (len(lats) - 1))] if lats else 0.0
    return {"commits": n, "seconds": round(dur, 2), "commits_per_s": round(n / dur, 1) if dur else 0.0,
            "worst_ms": round(worst * 1000, 1), "p99_ms": round(p99 * 1000, 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--litevault", default=os.path.join(HERE, "..", "target", "release", "litevault"))
    ap.add_argument("--writer", action="append", choices=sorted(WRITERS), help="default: both")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="extra backup arguments of a variant (repeatable); 'default=' always runs")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    src, _ = bench.ensure_db(args.work, args.size_mb, bench.DEFAULT_SEED)
    variants = [("default", [])] + [(v.split("=", 1)[0], v.split("=", 1)[1].split()) for v in args.variant]
    results = {"cores": os.cpu_count(), "size_mb": args.size_mb, "seconds": args.seconds, "rows": []}
    for wname in args.writer or ["light", "cpu"]:
        code = WRITERS[wname]
        wdb = os.path.join(args.work, "writer-bench.db")
        wlog, stop = wdb + ".log", wdb + ".stop"
        out = os.path.join(args.work, "writer-bench-out.tar.zst")

        def start(max_s):
            bench.remove(wlog, stop)
            return subprocess.Popen([sys.executable, "-c", code, wdb, wlog, stop, str(max_s)])

        def finish(p):
            open(stop, "w").close()
            p.wait(timeout=300)
            return bench.read_writer_log(wlog)

        for vname, extra in variants:
            bench.remove(wdb, wdb + "-wal", wdb + "-shm")
            shutil.copyfile(src, wdb)
            os.sync()
            # Alone.
            p = start(args.seconds + 1)
            t0 = time.monotonic()
            p.wait()
            ends, lat = finish(p)
            alone = stats(ends, lat, [(t0 + 1, ends[-1])])
            # With backups in a loop.
            p = start(args.seconds * 20 + 600)
            time.sleep(1)
            windows, walls, t_first = [], [], time.monotonic()
            while True:
                bench.remove(out)
                s = time.monotonic()
                r = subprocess.run([args.litevault, "backup", wdb, "-o", out, "--quiet"] + extra,
                                   capture_output=True, text=True)
                e = time.monotonic()
                if r.returncode != 0:
                    finish(p)
                    sys.exit(f"backup failed ({vname}): {r.stderr.strip()[-400:]}")
                windows.append((s, e)); walls.append(round(e - s, 2))
                if e - t_first >= args.seconds:
                    break
            time.sleep(0.2)
            ends, lat = finish(p)
            during = stats(ends, lat, windows)
            ratio = during["commits_per_s"] / alone["commits_per_s"] if alone["commits_per_s"] else 0
            worst_x = during["worst_ms"] / alone["worst_ms"] if alone["worst_ms"] else 0
            row = {"writer": wname, "variant": vname, "args": " ".join(extra), "alone": alone,
                   "during": during, "rate_ratio": round(ratio, 3), "worst_ratio": round(worst_x, 2),
                   "backups": len(walls), "backup_walls_s": walls,
                   "verdict": "PASS" if ratio >= 0.8 and worst_x <= 2.0 else "FAIL"}
            results["rows"].append(row)
            print(f"{wname:5} {vname:10} alone {alone['commits_per_s']:8.0f}/s worst {alone['worst_ms']:7.1f} ms p99 "
                  f"{alone['p99_ms']:.3f} | during {during['commits_per_s']:8.0f}/s ({ratio:.0%}) worst "
                  f"{during['worst_ms']:7.1f} ms ({worst_x:.1f}x) p99 {during['p99_ms']:.3f} | backups {walls} "
                  f"{row['verdict']}", flush=True)
        bench.remove(wdb, wdb + "-wal", wdb + "-shm", wlog, stop, out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
