#!/usr/bin/env python3
"""Merge benchmark: `litevault merge` on a row-heavy database that two machines share and extend.

    python3 bench/merge.py [--rows 1000000] [--work DIR] [--json [PATH]]

Generates (deterministic seed, cached in the work directory) an application database of small,
linked rows, the kind a team's tool keeps: users (UNIQUE email), projects, tasks (a foreign key
to their project and to a parent task), events (most rows), tags (UNIQUE name) and task_tags (a
composite primary key, WITHOUT ROWID). A common history of 2/3 of the rows, then two machines each
add their own 1/3 with colliding integer ids. Then, each as its own process (wall time, peak RSS):

  merge A into an empty copy of the schema      every row inserted
  merge B into A                                2/3 duplicates, 1/3 inserted with new ids
  merge B into A again                          every row a duplicate

and the rows per second of each, overall (reading and checking the archive included) and in
the merge transaction alone. Issue 4 asks for at least 200,000 incoming rows per second.
"""

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (measurement helpers)

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                   created_at TEXT NOT NULL);
CREATE TABLE projects(id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL REFERENCES users(id),
                      name TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE tasks(id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
                   parent_id INTEGER REFERENCES tasks(id), title TEXT NOT NULL,
                   state TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE events(id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks(id),
                    at TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT);
CREATE TABLE tags(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE task_tags(task_id INTEGER NOT NULL REFERENCES tasks(id),
                       tag_id INTEGER NOT NULL REFERENCES tags(id),
                       PRIMARY KEY(task_id, tag_id)) WITHOUT ROWID;
CREATE INDEX tasks_project ON tasks(project_id);
CREATE INDEX events_task ON events(task_id, at);
"""
WORDS = ("fix add remove update review test build deploy refactor document measure plan merge "
         "backup restore verify index query cache page table row column schema migration").split()
KINDS = ["created", "commented", "assigned", "state", "linked", "estimated"]
STATES = ["todo", "doing", "review", "done"]


def add_rows(conn, rnd, machine, n, stamp):
    """Appends about `n` rows spread over the tables, as machine `machine` would."""
    cur = conn.cursor()

    def ids(table):
        return [r[0] for r in cur.execute(f"SELECT id FROM {table}")]

    def next_id(table):
        return cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]

    n_users, n_tags = max(1, n // 500), max(1, n // 2000)
    n_projects, n_tasks = max(1, n // 100), max(1, n // 8)
    n_task_tags = n // 8
    n_events = max(1, n - n_users - n_tags - n_projects - n_tasks - n_task_tags)
    uid = next_id("users")
    cur.executemany("INSERT INTO users VALUES(?,?,?,?)", [
        (uid + i, f"{machine}-{stamp}-{uid + i}@example.org", f"user {machine} {uid + i}",
         f"2026-{stamp}-{i:07d}") for i in range(n_users)])
    tid = next_id("tags")
    cur.executemany("INSERT INTO tags VALUES(?,?)",
                    [(tid + i, f"{machine}-{stamp}-tag-{i}") for i in range(n_tags)])
    users, tags = ids("users"), ids("tags")
    pid = next_id("projects")
    cur.executemany("INSERT INTO projects VALUES(?,?,?,?)", [
        (pid + i, rnd.choice(users), f"project {machine} {stamp} {i}", f"2026-{stamp}-{i:07d}")
        for i in range(n_projects)])
    projects = ids("projects")
    k = next_id("tasks")
    rows = []
    for i in range(n_tasks):
        parent = k + rnd.randrange(i) if i and rnd.random() < 0.3 else None
        title = " ".join(rnd.choice(WORDS) for _ in range(5)) + f" #{machine}{stamp}{i}"
        rows.append((k + i, rnd.choice(projects), parent, title, rnd.choice(STATES), f"2026-{stamp}-{i:07d}"))
    cur.executemany("INSERT INTO tasks VALUES(?,?,?,?,?,?)", rows)
    tasks = list(range(k, k + n_tasks))
    pairs = set()
    while len(pairs) < n_task_tags:
        pairs.add((rnd.choice(tasks), rnd.choice(tags)))
    cur.executemany("INSERT INTO task_tags VALUES(?,?)", sorted(pairs))
    e = next_id("events")
    cur.executemany("INSERT INTO events VALUES(?,?,?,?,?)", [
        (e + i, rnd.choice(tasks), f"2026-{stamp}-{i:07d}", rnd.choice(KINDS),
         " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(3, 12))))
        for i in range(n_events)])
    conn.commit()


def ensure_dbs(work, rows, seed):
    """The two machines' databases (cached with a marker naming their parameters)."""
    marker = os.path.join(work, "merge.marker.json")
    want = {"rows": rows, "seed": seed, "version": 1}
    a, b, empty = (os.path.join(work, f) for f in ("machine-a.db", "machine-b.db", "empty.db"))
    if os.path.exists(marker) and json.load(open(marker)) == want and all(map(os.path.exists, (a, b, empty))):
        return a, b, empty
    run.log(f"generating the merge databases ({rows:,} rows each) ...")
    for p in (a, b, empty):
        run.remove(p, p + "-wal", p + "-shm")
    conn = sqlite3.connect(a)
    conn.executescript(SCHEMA)
    conn.close()
    shutil.copyfile(a, empty)
    conn = sqlite3.connect(a)
    add_rows(conn, random.Random(seed), "base", rows * 2 // 3, "01")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(a, b)
    for path, machine, s in ((a, "a", seed + 1), (b, "b", seed + 2)):
        conn = sqlite3.connect(path)
        add_rows(conn, random.Random(s), machine, rows - rows * 2 // 3, "02")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    json.dump(want, open(marker, "w"))
    return a, b, empty


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows per machine (default 1,000,000)")
    ap.add_argument("--work", default=os.path.join(HERE, "work-merge"), help="work directory (kept between runs)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "litevault"))
    args = ap.parse_args()
    lv = os.path.abspath(args.bin)
    if not os.path.exists(lv):
        run.log("building litevault (release) ...")
        os.system(f"cd {HERE}/.. && cargo build --release --quiet")
    os.makedirs(args.work, exist_ok=True)
    a, b, empty = ensure_dbs(args.work, args.rows, args.seed)
    w = lambda name: os.path.join(args.work, name)  # noqa: E731
    for name, db in (("a.tar.zst", a), ("b.tar.zst", b)):
        run.remove(w(name))
        run.measure([lv, "backup", db, "-o", w(name), "-q"])

    results = []
    for label, archive, base in (("A into an empty schema (all new)", "a.tar.zst", empty),
                                 ("B into A (2/3 duplicates, 1/3 new)", "b.tar.zst", a),
                                 ("B into A again (all duplicates)", "b.tar.zst", None)):
        target = w("target.db")
        if base is not None:
            run.remove(target, target + "-wal", target + "-shm")
            shutil.copyfile(base, target)
        run.log(f"merge {label} ...")
        # The safety archive of the target (merge's default) goes into the work directory.
        safety = w("safety")
        shutil.rmtree(safety, ignore_errors=True)
        os.makedirs(safety)
        m = run.measure([lv, "merge", w(archive), target, "--json", "--safety-dir", safety])
        shutil.rmtree(safety, ignore_errors=True)
        r = {"case": label, "wall_s": m.wall, "cpu_s": m.cpu, "rss_mib": (m.peak_kib or 0) / 1024, "rc": m.rc}
        try:
            rep = json.loads(m.stdout)
            n = sum(t["incoming"] for t in rep["tables"])
            r.update(rows=n, inserted=sum(t["inserted"] for t in rep["tables"]),
                     remapped=sum(t["remapped"] for t in rep["tables"]),
                     rows_per_s=n / max(m.wall, 1e-9),
                     txn_s=rep["merge_ms"] / 1000, txn_rows_per_s=n / max(rep["merge_ms"] / 1000, 1e-9),
                     sources_s=rep["sources_ms"] / 1000, safety_s=rep.get("safety_ms", 0) / 1000)
        except (ValueError, KeyError, TypeError):
            r["error"] = m.error_line()
        results.append(r)

    lines = ["| merge | rows | inserted | remapped | wall s | rows/s | safety archive s | merge txn s | "
             "rows/s in txn | peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "rows" not in r:
            lines.append(f"| {r['case']} | failed (rc {r['rc']}): {r.get('error', '')} |")
            continue
        lines.append(f"| {r['case']} | {r['rows']:,} | {r['inserted']:,} | {r['remapped']:,} | "
                     f"{r['wall_s']:.2f} | {r['rows_per_s']:,.0f} | {r['safety_s']:.2f} | {r['txn_s']:.2f} | "
                     f"{r['txn_rows_per_s']:,.0f} | {r['rss_mib']:.0f} |")
    worst = min((r.get("rows_per_s", 0) for r in results), default=0)
    lines.append("")
    lines.append(f"target: >= 200,000 incoming rows/s overall: {'PASS' if worst >= 200_000 else 'FAIL'} "
                 f"(slowest case {worst:,.0f} rows/s)")
    print("\n".join(lines))
    if args.json is not None:
        text = json.dumps({"results": results}, indent=2)
        if args.json:
            open(args.json, "w").write(text)
        else:
            print(text)
    return 0 if all("rows" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
