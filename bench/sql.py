#!/usr/bin/env python3
"""SQL dump benchmark: litevault's SQL dumps against the sqlite3 CLI, as users run it.

    python3 bench/sql.py [--size-mb 300] [--work DIR] [--json [PATH]]

Uses the application database of bench/run.py (same generator, same cache), then measures in
one run, each as its own process tree (wall time, CPU time, peak RSS of the largest process):

  dump     litevault backup --format sql --compression gzip   vs  sqlite3 db .dump | gzip -6
           litevault backup --format sql (zstd)
  restore  litevault restore x.sql.gz new.db (all checks)     vs  gunzip -c x.sql.gz | sqlite3 new.db
           litevault restore ... --quick, and from .sql.zst

Issue 3's target: dump and restore throughput at least the sqlite3 CLI's on a 300 MB database.
Also measured: `litevault merge` of the database's archive into an empty copy of its schema (all
rows new, the target's FTS triggers firing) and again (all rows duplicates); issue 4 asks for
200,000 incoming rows per second.
Note the CLI's own dump copies FTS shadow-table rows (its restore skips re-indexing), while
litevault never copies shadow tables and rebuilds full-text indexes from their text.
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the shared generator and measurement helpers)

MIB = 1024 * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300, help="database size in MiB (default 300)")
    ap.add_argument("--work", default=os.path.join(HERE, "work-sql"), help="work directory (kept between runs)")
    ap.add_argument("--seed", type=int, default=run.DEFAULT_SEED)
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "litevault"),
                    help="litevault binary (default: target/release/litevault; built if missing)")
    args = ap.parse_args()
    for tool in ("sqlite3", "gzip"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is needed (apt-get install -y {tool})", file=sys.stderr)
            return 1
    lv = os.path.abspath(args.bin)
    if not os.path.exists(lv):
        run.log("building litevault (release) ...")
        os.system(f"cd {HERE}/.. && cargo build --release --quiet")
    os.makedirs(args.work, exist_ok=True)
    db, facts = run.ensure_db(args.work, args.size_mb, args.seed)
    w = lambda name: os.path.join(args.work, name)  # noqa: E731

    rows = []

    def row(tool, op, argv, output=None, shell=False, clean=()):
        run.remove(*clean)
        cmd = ["sh", "-c", argv] if shell else argv
        res = run.measure(cmd, tree=shell)
        size = run.path_size(output) if output and os.path.exists(output) else None
        r = {
            "tool": tool,
            "op": op,
            "rc": res.rc,
            "wall_s": round(res.wall, 2),
            "cpu_s": round(res.cpu, 2) if res.cpu is not None else None,
            "peak_rss_mib": round((res.peak_kib or 0) / 1024, 1),
            "output_mib": round(size / MIB, 1) if size else None,
            "error": res.error_line() if res.rc else "",
            "stdout": res.stdout,
        }
        run.log(f"{tool:<42} {op:<8} {r['wall_s']:>7.2f} s  rc={res.rc}  {r['error']}")
        rows.append(r)
        return r

    def db_files(name):
        return [w(name) + s for s in ("", "-wal", "-shm", "-journal")]

    # Dumps.
    row("litevault backup --format sql --compression gzip", "dump",
        [lv, "backup", db, "--format", "sql", "--compression", "gzip", "-o", w("lv.sql.gz"), "--overwrite", "-q"],
        w("lv.sql.gz"))
    row("litevault backup --format sql (zstd)", "dump",
        [lv, "backup", db, "--format", "sql", "-o", w("lv.sql.zst"), "--overwrite", "-q"], w("lv.sql.zst"))
    row("sqlite3 db .dump | gzip -6", "dump", f"sqlite3 '{db}' .dump | gzip -6 > '{w('cli.sql.gz')}'",
        w("cli.sql.gz"), shell=True)
    # Restores.
    row("litevault restore x.sql.gz (all checks)", "restore",
        [lv, "restore", w("lv.sql.gz"), w("r1.db"), "-q"], w("r1.db"), clean=db_files("r1.db"))
    row("litevault restore x.sql.gz --quick", "restore",
        [lv, "restore", w("lv.sql.gz"), w("r2.db"), "-q", "--quick"], w("r2.db"), clean=db_files("r2.db"))
    row("litevault restore x.sql.zst --quick", "restore",
        [lv, "restore", w("lv.sql.zst"), w("r3.db"), "-q", "--quick"], w("r3.db"), clean=db_files("r3.db"))
    row("gunzip -c cli.sql.gz | sqlite3 new.db", "restore",
        f"gunzip -c '{w('cli.sql.gz')}' | sqlite3 '{w('r4.db')}'", w("r4.db"), shell=True, clean=db_files("r4.db"))
    row("litevault restore cli.sql.gz (foreign dump)", "restore",
        [lv, "restore", w("cli.sql.gz"), w("r5.db"), "-q", "--quick"], w("r5.db"), clean=db_files("r5.db"))

    # Merge: the archive of the database into an empty copy of its schema (every row inserted,
    # the target's FTS triggers firing), then again (every row a duplicate).
    import sqlite3
    merged = w("merge-target.db")
    run.remove(*db_files("merge-target.db"))
    src = sqlite3.connect(db)
    schema = [r[0] for r in src.execute(
        "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
        "AND name NOT IN (SELECT name FROM pragma_table_list WHERE type = 'shadow') ORDER BY rowid")]
    src.close()
    dst = sqlite3.connect(merged)
    for sql in schema:
        dst.execute(sql)
    dst.commit()
    dst.close()
    archive = w("merge-source.tar.zst")
    run.remove(archive)
    run.measure([lv, "backup", db, "-o", archive, "-q"])
    for label in ("litevault merge (all rows new)", "litevault merge again (all duplicates)"):
        safety = w("safety")
        shutil.rmtree(safety, ignore_errors=True)
        os.makedirs(safety)
        r = row(label, "merge", [lv, "merge", archive, merged, "--json", "--safety-dir", safety])
        shutil.rmtree(safety, ignore_errors=True)
        try:
            rep = json.loads(r.pop("stdout"))
            n = sum(t["incoming"] for t in rep["tables"])
            r["note"] = (f"{n} rows: {n / max(r['wall_s'], 1e-9):,.0f} rows/s overall; merge transaction "
                         f"{rep['merge_ms'] / 1000:.2f} s = {n / max(rep['merge_ms'] / 1000, 1e-9):,.0f} rows/s, "
                         f"reading the source {rep['sources_ms'] / 1000:.2f} s, "
                         f"safety archive of the target {rep.get('safety_ms', 0) / 1000:.2f} s")
        except (ValueError, KeyError):
            r["note"] = "no report"
    def find(tool):
        return next(r for r in rows if r["tool"] == tool)

    cli_dump = find("sqlite3 db .dump | gzip -6")["wall_s"]
    cli_restore = find("gunzip -c cli.sql.gz | sqlite3 new.db")["wall_s"]
    db_mib = facts["bytes"] / MIB
    lines = [
        f"SQL dumps of a {db_mib:.0f} MiB database ({facts.get('sqlite_version', '')} generator, seed {args.seed}), "
        f"{os.cpu_count()} cores:",
        "",
        "| tool | op | wall s | MiB/s of db | vs sqlite3 CLI | CPU s | peak RSS MiB | output MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        r.pop("stdout", None)
    for r in rows:
        if r["op"] == "merge":
            continue
        base = cli_dump if r["op"] == "dump" else cli_restore
        lines.append(
            f"| {run.cell(r['tool'])} | {r['op']} | {r['wall_s']:.2f} | {db_mib / r['wall_s']:.1f} | "
            f"{base / r['wall_s']:.2f}x | {r['cpu_s']} | {r['peak_rss_mib']} | {r['output_mib']} |"
        )
    lines += ["", "| merge | wall s | peak RSS MiB | detail |", "|---|---:|---:|---|"]
    for r in rows:
        if r["op"] == "merge":
            lines.append(f"| {r['tool']} | {r['wall_s']:.2f} | {r['peak_rss_mib']} | {r.get('note', '')} |")
    lv_dump = find("litevault backup --format sql --compression gzip")["wall_s"]
    lv_restore = find("litevault restore x.sql.gz (all checks)")["wall_s"]
    lv_quick = find("litevault restore x.sql.gz --quick")["wall_s"]
    verdict = [
        f"- dump (gzip) {lv_dump:.2f} s vs sqlite3 .dump | gzip -6 {cli_dump:.2f} s: "
        f"{'PASS' if lv_dump <= cli_dump else 'FAIL'} ({cli_dump / lv_dump:.2f}x the CLI's throughput)",
        f"- restore (gzip, all checks incl. round trip) {lv_restore:.2f} s, --quick {lv_quick:.2f} s vs gunzip | sqlite3 "
        f"{cli_restore:.2f} s: {'PASS' if lv_quick <= cli_restore else 'FAIL'} for --quick "
        f"({cli_restore / lv_quick:.2f}x), {'PASS' if lv_restore <= cli_restore else 'FAIL'} with all checks "
        f"({cli_restore / lv_restore:.2f}x)",
    ]
    text = "\n".join(lines + [""] + verdict) + "\n"
    print(text)
    failed = [r for r in rows if r["rc"] != 0]
    if args.json is not None:
        data = json.dumps({"database": facts, "rows": rows, "verdict": verdict}, indent=2)
        if args.json:
            with open(args.json, "w") as f:
                f.write(data)
        else:
            print(data)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
