#!/usr/bin/env python3
"""Speed at the floor: litevault's backup, incremental, restore and verify against zstd.

    python3 bench/speed.py [--sizes 300,1024] [--repeat 3] [--work DIR] [--skip-s3] [--json [PATH]]

For each size, on a private copy of bench/run.py's database (same generator, WAL mode), in
interleaved rounds (every row once per round, `--repeat` rounds, medians reported):

  zstd -T0 -3 + fsync       compress the database file, then `sync` the output
  backup                    `litevault backup DB -o out.tar.zst` (every default check, fsync)
  incremental after 1%      1% of the rows of `comments` updated (a different 1% each round), then
                            `litevault backup --incremental --dir LOC` (its parent: the previous
                            link of the chain)
  zstd -d + fsync           decompress zstd's output, then `sync` the restored file
  restore                   `litevault restore ARCHIVE NEW.db` (every default check)
  restore --quick           the same with `--quick`
  verify / verify --quick   `litevault verify ARCHIVE`
  backup to S3              (unless --skip-s3) the same backup into SeaweedFS on loopback: CPU
                            seconds of litevault alone and its peak RSS

Targets (issue "speed at the floor"): incremental <= 0.25x a full backup; backup <= 1.2x zstd
-T0 -3 + fsync; archive <= 1.0x zstd -3's output; restore and verify <= 2x zstd -d + fsync,
`--quick` <= 1.3x; litevault's CPU for a backup to S3 <= 1.15x a local one; peak RSS <= 100 MB
everywhere. Each prints PASS or FAIL. Python standard library only.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402

REPO = run.REPO
MIB = run.MIB
RSS_LIMIT_KIB = 100 * 10**6 / 1024


def edit_one_percent(db: str, k: int) -> int:
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    cur = con.execute("UPDATE comments SET body = body || ' (edited)' WHERE id % 100 = ?", (k,))
    n = cur.rowcount
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return n


def sh(cmd: str) -> list[str]:
    return ["bash", "-c", cmd]


class Rows:
    def __init__(self):
        self.runs: dict[str, list[run.Result]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, name: str, res: run.Result):
        if res.rc != 0:
            raise SystemExit(f"{name} failed (exit {res.rc}): {res.stderr.strip()[-2000:]}")
        self.runs.setdefault(name, []).append(res)

    def wall(self, name: str) -> float:
        return statistics.median(r.wall for r in self.runs[name])

    def cpu(self, name: str) -> float:
        return statistics.median(r.cpu for r in self.runs[name])

    def peak(self, name: str) -> float:
        return max((r.peak_kib or 0) for r in self.runs[name])


def bench_size(lv: str, size_mb: int, args, weed) -> dict:
    db0, facts = run.ensure_db(args.work, size_mb, args.seed)
    work = os.path.join(args.work, f"speed-{size_mb}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    db = os.path.join(work, "app.db")
    shutil.copyfile(db0, db)
    out = os.path.join(work, "out")
    loc = os.path.join(work, "chain")
    os.makedirs(out)
    env = dict(os.environ, LITEVAULT_DIR=os.path.join(work, "lvdir"))
    rows = Rows()
    meas = lambda argv, **kw: run.measure(argv, env=kw.pop("env", env), cwd=work, **kw)  # noqa: E731
    # The chain's full backup, and the page cache warm.
    first = meas([lv, "backup", db, "--dir", loc, "--incremental", "--json"])
    if first.rc != 0:
        raise SystemExit(f"first backup failed: {first.stderr}")
    zst = os.path.join(out, "db.zst")
    arc = os.path.join(out, "lv.tar.zst")
    restored = os.path.join(out, "restored.db")
    for rnd in range(args.repeat):
        run.log(f"{size_mb} MiB: round {rnd + 1} of {args.repeat}")
        run.remove(zst)
        rows.add("zstd -T0 -3 + fsync", meas(sh(f"zstd -q -T0 -3 -f {db} -o {zst} && sync {zst}"), tree=True))
        rows.sizes["zstd -T0 -3 + fsync"] = os.path.getsize(zst)
        os.sync()
        run.remove(arc)
        rows.add("backup", meas([lv, "backup", db, "-o", arc, "--json"]))
        rows.sizes["backup"] = os.path.getsize(arc)
        os.sync()
        edit_one_percent(db, 7 + rnd)
        os.sync()
        res = meas([lv, "backup", db, "--dir", loc, "--incremental", "--json"])
        rows.add("incremental after 1%", res)
        rep = json.loads(res.stdout)
        if rep.get("kind") != "incremental":
            raise SystemExit(f"the incremental was a {rep.get('kind')} backup: {res.stdout[:800]}")
        newest = max((os.path.join(loc, n) for n in os.listdir(loc)), key=os.path.getmtime)
        rows.sizes["incremental after 1%"] = os.path.getsize(newest)
        os.sync()
        for name, cmd in (
            ("zstd -d + fsync", sh(f"zstd -q -d -f {zst} -o {restored} && sync {restored}")),
            ("restore", [lv, "restore", arc, restored, "--json"]),
            ("restore --quick", [lv, "restore", arc, restored, "--quick", "--json"]),
        ):
            run.remove(restored, restored + "-wal", restored + "-shm")
            os.sync()
            rows.add(name, meas(cmd, tree=name.startswith("zstd")))
        run.remove(restored)
        rows.add("verify", meas([lv, "verify", arc, "--json"]))
        rows.add("verify --quick", meas([lv, "verify", arc, "--quick", "--json"]))
        if weed is not None:
            url = f"s3://{weed.bucket}/speed-{size_mb}"
            rows.add("backup to S3", meas([lv, "backup", db, "--dir", url, "--json"], env=dict(weed.env(), LITEVAULT_DIR=env["LITEVAULT_DIR"])))
    shutil.rmtree(work, ignore_errors=True)
    return {"size_mb": size_mb, "bytes": facts.get("bytes"), "rows": rows}


def report(results: list[dict]) -> tuple[str, list[tuple[str, bool]], dict]:
    lines = []
    verdicts = []
    data = []
    for r in results:
        rows: Rows = r["rows"]
        lines.append(f"\n### {r['size_mb']} MiB database ({(r['bytes'] or 0) / MIB:.0f} MiB file)\n")
        lines.append("| row | wall s (median) | runs | CPU s | peak RSS MiB | output MiB |")
        lines.append("|---|---:|---|---:|---:|---:|")
        for name, runs in rows.runs.items():
            size = rows.sizes.get(name)
            lines.append(
                f"| {name} | {rows.wall(name):.2f} | {', '.join(f'{x.wall:.2f}' for x in runs)} | "
                f"{rows.cpu(name):.2f} | {rows.peak(name) / 1024:.1f} | "
                f"{'' if size is None else f'{size / MIB:.2f}'} |")
            data.append({"size_mb": r["size_mb"], "row": name, "walls": [x.wall for x in runs],
                         "cpus": [x.cpu for x in runs], "peak_kib": rows.peak(name), "bytes": size})

        def target(label, value, limit):
            ok = value <= limit
            verdicts.append((f"{r['size_mb']} MiB: {label}", ok))
            lines.append(f"{'PASS' if ok else 'FAIL'}: {label}: {value:.2f}x (target <= {limit}x)")

        lines.append("")
        target("incremental after 1% / backup", rows.wall("incremental after 1%") / rows.wall("backup"), 0.25)
        target("backup / zstd -T0 -3 + fsync", rows.wall("backup") / rows.wall("zstd -T0 -3 + fsync"), 1.2)
        target("archive / zstd -3 output", rows.sizes["backup"] / rows.sizes["zstd -T0 -3 + fsync"], 1.0)
        zd = rows.wall("zstd -d + fsync")
        target("restore / zstd -d + fsync", rows.wall("restore") / zd, 2.0)
        target("restore --quick / zstd -d + fsync", rows.wall("restore --quick") / zd, 1.3)
        target("verify / zstd -d + fsync", rows.wall("verify") / zd, 2.0)
        target("verify --quick / zstd -d + fsync", rows.wall("verify --quick") / zd, 1.3)
        if "backup to S3" in rows.runs:
            target("CPU s of a backup to S3 / a local one", rows.cpu("backup to S3") / rows.cpu("backup"), 1.15)
            lines.append(f"(wall: backup to S3 {rows.wall('backup to S3'):.2f} s, "
                         f"{rows.wall('backup to S3') / rows.wall('backup'):.2f}x the local one; "
                         "the S3 server shares the machine)")
        lv_rows = [n for n in rows.runs if not n.startswith("zstd")]
        worst = max(lv_rows, key=rows.peak)
        ok = rows.peak(worst) <= RSS_LIMIT_KIB
        verdicts.append((f"{r['size_mb']} MiB: peak RSS", ok))
        lines.append(f"{'PASS' if ok else 'FAIL'}: peak RSS {rows.peak(worst) / 1024:.1f} MiB "
                     f"({worst}; target <= 100 MB = 95.4 MiB)")
    return "\n".join(lines), verdicts, {"format": "litevault-speed/1", "rows": data}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,1024", help="database sizes in MiB, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=run.DEFAULT_SEED)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--litevault", default=os.path.join(REPO, "target/release/litevault"))
    ap.add_argument("--json", nargs="?", const="-", default=None)
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target FAILs")
    args = ap.parse_args(argv)
    if not os.path.exists(args.litevault):
        raise SystemExit(f"{args.litevault} is missing: run `cargo build --release`")
    if shutil.which("zstd") is None:
        raise SystemExit("zstd is missing: apt-get install -y zstd")
    os.makedirs(args.work, exist_ok=True)
    weed = None
    if not args.skip_s3:
        import s3  # noqa: E402
        weed = s3.Weed(args.work)
    results = []
    started = time.time()
    try:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            results.append(bench_size(args.litevault, size, args, weed))
    finally:
        if weed is not None:
            weed.stop()
    text, verdicts, data = report(results)
    print(f"# litevault speed ({time.strftime('%Y-%m-%d', time.gmtime(started))}, "
          f"{os.cpu_count()} CPUs, repeat {args.repeat})")
    print(text)
    if args.json:
        data["verdicts"] = [{"target": t, "pass": ok} for t, ok in verdicts]
        if args.json == "-":
            json.dump(data, sys.stdout, indent=2)
        else:
            with open(args.json, "w") as f:
                json.dump(data, f, indent=2)
    return 1 if args.strict and not all(ok for _, ok in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
