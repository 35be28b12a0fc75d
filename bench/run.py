#!/usr/bin/env python3
"""litevault benchmark harness (Python 3.11, standard library only).

    python3 bench/run.py [--size-mb N] [--work DIR] [--skip-restic] [--json [PATH]]

Generates (once, cached) a realistic application database, then runs litevault and the usual
alternatives each as its own subprocess, measuring whole-process wall time, CPU time, peak RSS
(VmHWM polled from /proc) and output size. Prints machine facts, a Markdown table, the
writer-during-backup numbers and PASS/FAIL lines for the targets. See bench/README.md.
"""

from __future__ import annotations

import argparse
import array
import bisect
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
GEN_VERSION = 1
DEFAULT_SEED = 20261121
MIB = 1024 * 1024
INSTALL_HINT = "apt-get install -y sqlite3 zstd restic"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Database generation
# --------------------------------------------------------------------------------------------

COMMON_WORDS = """the of and to in is that for it as was with be by on not he this are or his
from at which but have an they you were her she there one all we their been has would when if so
no will can more who what up said about other into out than then them these some its only time
could new like any also two my first may after should where most over such way even well our
because much many those through very how just people before back must did between each three made
down here used work life use still years same being under another while might never state good
make see know take year day get come think look want give find tell ask seem feel try leave call
keep let begin show hear play run move live believe bring happen write provide sit stand lose pay
meet include continue set learn change lead understand watch follow stop create speak read allow
add spend grow open walk win offer remember love consider appear buy wait serve die send expect
build stay fall cut reach kill remain suggest raise pass sell require report decide pull""".split()

TECH_WORDS = """database backup restore sqlite page index query table archive schema transaction
commit replica storage server client request response cache memory latency throughput document
comment attachment version user account project issue release feature error warning config
network deploy cluster node shard partition snapshot checksum manifest compression stream buffer
journal checkpoint writer reader lock timeout retry queue worker scheduler metric dashboard alert
incident review design proposal budget invoice customer order payment shipment inventory product
catalog search filter report export import migration upgrade rollback policy audit security token
session password permission role team meeting agenda minutes draft final summary analysis result
benchmark measurement regression test coverage pipeline build artifact container image volume""".split()

FIRST_NAMES = """Ada Alan Grace Linus Barbara Ken Dennis Margaret Edsger Donald Frances Tim John
Radia Leslie Niklaus Bjarne Guido Yukihiro Anders Sophie Mateo Amara Chen Priya Olu Ingrid Kofi
Lucia Hiro Fatima Noah Emma Liam Mia Lena Omar Sara Jonas Elif""".split()
LAST_NAMES = """Lovelace Turing Hopper Torvalds Liskov Thompson Ritchie Hamilton Dijkstra Knuth
Allen Berners Backus Perlman Lamport Wirth Stroustrup Rossum Matsumoto Hejlsberg Wilson Garcia
Okafor Wang Sharma Adeyemi Berg Mensah Rossi Tanaka Haddad Schmidt Nowak Kowalski Silva""".split()
DOMAINS = ["example.com", "example.org", "mail.test", "corp.test", "users.invalid"]


def _pseudo_words(rng: random.Random, n: int) -> list[str]:
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
              "br", "ch", "st", "tr", "pl", "gr", "sh", "th", "qu"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rk", "x"]
    seen = set(COMMON_WORDS) | set(TECH_WORDS)
    out = []
    while len(out) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
        w += rng.choice(codas)
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


class TextGen:
    """Prose-like text: sentences from a fixed vocabulary with Zipf-like word frequencies."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        vocab = COMMON_WORDS + TECH_WORDS + _pseudo_words(random.Random(7), 6000)
        self.vocab = vocab
        total = 0.0
        cum = []
        for rank in range(len(vocab)):
            total += 1.0 / (rank + 2.7) ** 1.07
            cum.append(total)
        self.cum = cum

    def words(self, n: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=n)

    def prose(self, nwords: int) -> str:
        rng = self.rng
        ws = self.words(nwords)
        paras = []
        sents = []
        i = 0
        while i < nwords:
            n = rng.randint(5, 19)
            s = ws[i:i + n]
            i += n
            if len(s) > 8 and rng.random() < 0.5:
                k = rng.randint(3, len(s) - 3)
                s[k] = s[k] + ","
            s[0] = s[0].capitalize()
            r = rng.random()
            sents.append(" ".join(s) + ("." if r < 0.85 else "?" if r < 0.93 else "!"))
            if len(sents) >= rng.randint(3, 8):
                paras.append(" ".join(sents))
                sents = []
        if sents:
            paras.append(" ".join(sents))
        return "\n\n".join(paras)

    def title(self) -> str:
        return " ".join(w.capitalize() for w in self.words(self.rng.randint(3, 8)))


SCHEMA = """
PRAGMA foreign_keys=ON;
CREATE TABLE users(
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  created_at TEXT NOT NULL,
  last_seen TEXT,
  bio TEXT
);
CREATE TABLE documents(
  id INTEGER PRIMARY KEY,
  owner_id INTEGER NOT NULL REFERENCES users(id),
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE comments(
  id INTEGER PRIMARY KEY,
  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  user_id INTEGER NOT NULL REFERENCES users(id),
  created_at TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE TABLE attachments(
  id INTEGER PRIMARY KEY,
  document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  filename TEXT NOT NULL,
  mime TEXT NOT NULL,
  size INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE TABLE audit_log(
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  action TEXT NOT NULL,
  document_id INTEGER
);
CREATE INDEX documents_owner ON documents(owner_id, updated_at);
CREATE INDEX comments_document ON comments(document_id, created_at);
CREATE INDEX comments_user ON comments(user_id);
CREATE INDEX attachments_document ON attachments(document_id);
CREATE VIRTUAL TABLE documents_fts USING fts5(title, body, content='documents', content_rowid='id');
CREATE TRIGGER documents_fts_ai AFTER INSERT ON documents BEGIN
  INSERT INTO documents_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER documents_fts_ad AFTER DELETE ON documents BEGIN
  INSERT INTO documents_fts(documents_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER documents_fts_au AFTER UPDATE ON documents BEGIN
  INSERT INTO documents_fts(documents_fts, rowid, title, body) VALUES ('delete', old.id, old.title, old.body);
  INSERT INTO documents_fts(rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER documents_audit AFTER UPDATE OF body ON documents BEGIN
  INSERT INTO audit_log(at, action, document_id) VALUES (new.updated_at, 'update', new.id);
END;
CREATE VIEW document_summary AS
  SELECT d.id, d.title, u.name AS owner, d.updated_at,
         (SELECT count(*) FROM comments c WHERE c.document_id = d.id) AS n_comments,
         (SELECT coalesce(sum(a.size), 0) FROM attachments a WHERE a.document_id = d.id) AS attachment_bytes
  FROM documents d JOIN users u ON u.id = d.owner_id;
"""

T0_EPOCH = 1_600_000_000


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def generate_db(path: str, size_mb: int, seed: int) -> dict:
    """Generate the database deterministically; returns facts for the marker."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    rng = random.Random(seed)
    tg = TextGen(rng)
    target = size_mb * MIB
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA page_size=4096")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-131072")
    con.executescript(SCHEMA)
    con.execute("PRAGMA user_version=42")
    con.execute("PRAGMA application_id=1818588534")  # 'lvbv'

    n_users = n_docs = n_comments = n_att = 0
    clock = float(T0_EPOCH)
    unit = 0
    t_start = time.monotonic()
    con.execute("BEGIN")
    while True:
        unit += 1
        # users
        users = []
        for _ in range(10):
            n_users += 1
            clock += rng.uniform(10, 600)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            users.append((n_users, f"{first.lower()}.{last.lower()}{n_users}@{rng.choice(DOMAINS)}",
                          f"{first} {last}", iso(clock), iso(clock + rng.uniform(0, 9e6)),
                          tg.prose(rng.randint(8, 60)) if rng.random() < 0.7 else None))
        con.executemany("INSERT INTO users VALUES (?,?,?,?,?,?)", users)
        # documents
        docs = []
        for _ in range(75):
            n_docs += 1
            clock += rng.uniform(5, 300)
            nwords = min(6000, max(40, int(rng.lognormvariate(6.6, 0.6))))
            created = iso(clock)
            upd = iso(clock + rng.expovariate(1 / 86400.0))
            owner = max(1, n_users - int(rng.expovariate(1 / max(1.0, n_users * 0.3))))
            docs.append((n_docs, owner, tg.title(), tg.prose(nwords), created, upd,
                         1 + int(rng.expovariate(0.5))))
        con.executemany("INSERT INTO documents VALUES (?,?,?,?,?,?,?)", docs)
        # comments (biased towards recent documents and active users)
        comments = []
        for _ in range(375):
            n_comments += 1
            doc = max(1, n_docs - int(rng.expovariate(1 / max(1.0, n_docs * 0.2))))
            user = 1 + min(n_users - 1, int(rng.paretovariate(1.2)) * 7 % n_users)
            comments.append((n_comments, doc, user, iso(clock - rng.uniform(0, 3600)),
                             tg.prose(max(3, int(rng.lognormvariate(3.5, 0.7))))))
        con.executemany("INSERT INTO comments VALUES (?,?,?,?,?)", comments)
        # attachments: half random bytes (already compressed media), half repetitive text/json
        log_pool = None
        atts = []
        for _ in range(8):
            n_att += 1
            size = int(math.exp(rng.uniform(math.log(2048), math.log(512 * 1024))))
            doc = rng.randint(max(1, n_docs - 74), n_docs)
            if rng.random() < 0.5:
                kind = rng.choice([("jpg", "image/jpeg"), ("png", "image/png"),
                                   ("zip", "application/zip"), ("pdf", "application/pdf")])
                data = rng.randbytes(size)
            else:
                if log_pool is None:
                    log_pool = []
                    for _ in range(300):
                        if rng.random() < 0.5:
                            log_pool.append(
                                f"{iso(clock - rng.uniform(0, 86400))} "
                                f"{rng.choice(['INFO', 'INFO', 'INFO', 'WARN', 'DEBUG', 'ERROR'])} "
                                f"[{rng.choice(TECH_WORDS)}] req={rng.getrandbits(48):012x} "
                                f"user={rng.randint(1, n_users)} path=/api/v2/{rng.choice(TECH_WORDS)}s/"
                                f"{rng.randint(1, 99999)} status={rng.choice([200, 200, 200, 201, 204, 304, 404, 500])} "
                                f"dur_ms={rng.randint(0, 900)}\n")
                        else:
                            log_pool.append(json.dumps({
                                "id": rng.randint(1, 10**9), "type": rng.choice(TECH_WORDS),
                                "owner": rng.randint(1, n_users), "ok": rng.random() < 0.9,
                                "score": round(rng.random() * 100, 3),
                                "tags": rng.sample(TECH_WORDS, 3)}) + "\n")
                kind = rng.choice([("log", "text/plain"), ("jsonl", "application/x-ndjson"),
                                   ("csv", "text/csv")])
                data = "".join(rng.choices(log_pool, k=size // 90 + 1)).encode()[:size]
            atts.append((n_att, doc, f"{tg.words(1)[0]}-{n_att}.{kind[0]}", kind[1], len(data), data))
        con.executemany("INSERT INTO attachments VALUES (?,?,?,?,?,?)", atts)

        size = con.execute("PRAGMA page_count").fetchone()[0] * 4096
        done = size >= target
        if unit % 8 == 0 or done:
            con.execute("COMMIT")
            log(f"  generating: {size / MIB:7.1f} / {size_mb} MiB "
                f"({time.monotonic() - t_start:5.1f} s)")
            if done:
                break
            con.execute("BEGIN")

    # Realistic wear: some deleted rows (free pages) and a round of edits.
    con.execute("BEGIN")
    con.execute("DELETE FROM comments WHERE id % 40 = 0")
    con.execute("DELETE FROM attachments WHERE id % 25 = 0")
    con.execute("UPDATE documents SET body = body || ' (edited)', version = version + 1, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', created_at, '+3 days') WHERE id % 97 = 0")
    con.execute("COMMIT")
    con.execute("PRAGMA analysis_limit=1000")
    con.execute("ANALYZE")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    facts = db_facts(con)
    con.close()
    facts["generation_s"] = round(time.monotonic() - t_start, 1)
    return facts


def db_facts(con: sqlite3.Connection) -> dict:
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    tables = {}
    for (name,) in con.execute("SELECT name FROM sqlite_schema WHERE type='table' "
                               "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall():
        tables[name] = q(f'SELECT count(*) FROM "{name}"')
    return {
        "page_size": q("PRAGMA page_size"),
        "page_count": q("PRAGMA page_count"),
        "freelist_count": q("PRAGMA freelist_count"),
        "journal_mode": q("PRAGMA journal_mode"),
        "rows": tables,
        "indexes": q("SELECT count(*) FROM sqlite_schema WHERE type='index' AND sql IS NOT NULL"),
        "views": q("SELECT count(*) FROM sqlite_schema WHERE type='view'"),
        "triggers": q("SELECT count(*) FROM sqlite_schema WHERE type='trigger'"),
    }


def ensure_db(work: str, size_mb: int, seed: int) -> tuple[str, dict]:
    path = os.path.join(work, "app.db")
    marker_path = os.path.join(work, "app.db.marker.json")
    want = {"generator": GEN_VERSION, "size_mb": size_mb, "seed": seed}
    if os.path.exists(path) and os.path.exists(marker_path):
        try:
            with open(marker_path) as f:
                marker = json.load(f)
            if ({k: marker.get(k) for k in want} == want
                    and marker.get("bytes") == os.path.getsize(path)
                    and (not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0)):
                log(f"reusing cached database {path} ({marker['bytes'] / MIB:.1f} MiB)")
                marker["cached"] = True
                return path, marker
        except (OSError, ValueError, KeyError):
            pass
    if os.path.exists(marker_path):
        os.remove(marker_path)
    log(f"generating a {size_mb} MiB database at {path} (seed {seed}) ...")
    facts = generate_db(path, size_mb, seed)
    marker = dict(want, bytes=os.path.getsize(path), python=platform.python_version(),
                  sqlite_version=sqlite3.sqlite_version, **facts)
    with open(marker_path, "w") as f:
        json.dump(marker, f, indent=2)
    marker["cached"] = False
    return path, marker


# --------------------------------------------------------------------------------------------
# Measurement: wall time, CPU time, peak RSS by polling /proc/<pid>/status VmHWM
# --------------------------------------------------------------------------------------------

def read_status(pid: int) -> tuple[int | None, bytes]:
    """(VmHWM in KiB or None, the raw status text) of a process."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            data = f.read()
    except OSError:
        return None, b""
    i = data.find(b"VmHWM:")
    if i < 0:
        return None, data  # zombie (exited, not yet reaped) or kernel thread
    j = data.find(b"kB", i)
    try:
        return int(data[i + 6:j]), data
    except ValueError:
        return None, data


def status_name(data: bytes) -> str:
    if data.startswith(b"Name:"):
        return data[5:data.find(b"\n")].decode(errors="replace").strip()
    return "?"


def child_pids(pid: int) -> list[int]:
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except (OSError, ValueError):
            pass
    return out


class Result:
    def __init__(self):
        self.rc = None
        self.wall = None
        self.cpu = None
        self.peak_kib = None      # max VmHWM over the processes seen
        self.peak_proc = None
        self.sum_kib = None       # sum of per-process peaks (upper bound for a pipeline)
        self.nprocs = 0
        self.stdout = ""
        self.stderr = ""
        self.timed_out = False

    def error_line(self) -> str:
        for text in (self.stderr, self.stdout):
            for line in reversed(text.strip().splitlines()):
                line = line.strip()
                if line:
                    return line[:200]
        return f"exit code {self.rc}"


def measure(argv: list[str], *, env: dict | None = None, cwd: str | None = None,
            tree: bool = False, timeout: float | None = None, interval: float = 0.002) -> Result:
    """Run argv as a subprocess; wall time from just before spawn to reaping (in a thread, so
    polling does not delay it), CPU from wait4's rusage (user+sys of the child and the
    descendants it waited for), peak RSS by polling VmHWM every `interval` seconds. With
    tree=True, descendants found through /proc/<pid>/task/*/children are polled too."""
    res = Result()
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    done = threading.Event()
    box = {}
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL, env=env,
                         cwd=cwd, start_new_session=True)

    def waiter():
        _, status, ru = os.wait4(p.pid, 0)
        box["t1"] = time.perf_counter()
        box["status"] = status
        box["ru"] = ru
        p.returncode = os.waitstatus_to_exitcode(status)
        done.set()

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    known = [p.pid]
    known_set = {p.pid}
    while not done.is_set():
        i = 0
        while i < len(known):
            pid = known[i]
            v, data = read_status(pid)
            if v is not None and v > peaks.get(pid, 0):
                peaks[pid] = v
                names[pid] = status_name(data)
            if tree:
                for c in child_pids(pid):
                    if c not in known_set:
                        known_set.add(c)
                        known.append(c)
            i += 1
        if timeout is not None and time.perf_counter() - t0 > timeout:
            res.timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            done.wait(10)
            break
        done.wait(interval)
    th.join(10)
    res.wall = box.get("t1", time.perf_counter()) - t0
    ru = box.get("ru")
    if ru is not None:
        res.cpu = ru.ru_utime + ru.ru_stime
    res.rc = p.returncode if not res.timed_out else -9
    if peaks:
        top = max(peaks, key=peaks.get)
        res.peak_kib = peaks[top]
        res.peak_proc = names.get(top, "?")
        res.sum_kib = sum(peaks.values())
        res.nprocs = len(peaks)
    out_f.seek(0)
    err_f.seek(0)
    res.stdout = out_f.read().decode(errors="replace")
    res.stderr = err_f.read().decode(errors="replace")
    out_f.close()
    err_f.close()
    return res


def cell(text: str) -> str:
    """Escape a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def path_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def remove(*paths: str) -> None:
    for path in paths:
        for p in (path, path + "-wal", path + "-shm", path + "-journal"):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.remove(p)


def tool_version(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0].strip() if text else None


# --------------------------------------------------------------------------------------------
# Inline Python programs run as subprocesses
# --------------------------------------------------------------------------------------------

PY_BACKUP_TAR = r"""
import io, json, os, sqlite3, sys, tarfile, time
db, out, tmp = sys.argv[1:4]
src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
dst = sqlite3.connect(tmp)
src.backup(dst)
meta = {"source": os.path.abspath(db), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sqlite_version": sqlite3.sqlite_version,
        "page_size": dst.execute("PRAGMA page_size").fetchone()[0],
        "page_count": dst.execute("PRAGMA page_count").fetchone()[0],
        "user_version": dst.execute("PRAGMA user_version").fetchone()[0]}
dst.close()
src.close()
meta["size"] = os.path.getsize(tmp)
data = json.dumps(meta, indent=2).encode()
with tarfile.open(out, "w:gz", compresslevel=6) as tf:
    ti = tarfile.TarInfo("metadata.json")
    ti.size = len(data)
    ti.mtime = int(time.time())
    tf.addfile(ti, io.BytesIO(data))
    tf.add(tmp, arcname="database.sqlite")
os.remove(tmp)
"""

PY_ITERDUMP = r"""
import gzip, sqlite3, sys
db, out = sys.argv[1:3]
try:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with gzip.open(out, "wt", compresslevel=6, encoding="utf-8") as f:
        for line in con.iterdump():
            f.write(line)
            f.write("\n")
except Exception as e:
    print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
"""

PY_WRITER = r"""
import array, os, random, sqlite3, sys, time
db, out, stopfile, max_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
con = sqlite3.connect(db, isolation_level=None, timeout=60)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
n_users = con.execute("SELECT max(id) FROM users").fetchone()[0]
n_docs = con.execute("SELECT max(id) FROM documents").fetchone()[0]
rng = random.Random(11)
words = "backup writer commit page index query fast small steady latency table row".split()
ends = array.array("d")
lat = array.array("d")
mono = time.monotonic
deadline = mono() + max_s
exists = os.path.exists
i = 0
while True:
    t = mono()
    if t >= deadline or ((i & 31) == 0 and exists(stopfile)):
        break
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO comments(document_id, user_id, created_at, body) VALUES (?,?,?,?)",
                (rng.randint(1, n_docs), rng.randint(1, n_users), "2026-11-21T10:15:00Z",
                 " ".join(rng.choices(words, k=rng.randint(8, 40)))))
    con.execute("UPDATE users SET last_seen = ? WHERE id = ?", (str(t), rng.randint(1, n_users)))
    con.execute("COMMIT")
    e = mono()
    ends.append(e)
    lat.append(e - t)
    i += 1
con.close()
with open(out, "wb") as f:
    array.array("q", [len(ends)]).tofile(f)
    ends.tofile(f)
    lat.tofile(f)
"""


def read_writer_log(path: str) -> tuple[array.array, array.array]:
    with open(path, "rb") as f:
        n = array.array("q")
        n.fromfile(f, 1)
        ends = array.array("d")
        ends.fromfile(f, n[0])
        lat = array.array("d")
        lat.fromfile(f, n[0])
    return ends, lat


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = os.path.abspath(args.work)
        self.out = os.path.join(self.work, "out")
        self.lvdir = os.path.join(self.work, "litevault-dir")
        self.rows: list[dict] = []
        self.artifacts: dict[str, str] = {}
        self.facts: dict = {}
        self.writer: dict = {}
        self.targets: list[dict] = []
        self.env = dict(os.environ)
        self.env["LITEVAULT_DIR"] = self.lvdir
        self.env["TMPDIR"] = os.path.join(self.work, "tmp")
        self.tools = {name: shutil.which(name) for name in
                      ("sqlite3", "zstd", "gzip", "gunzip", "tar", "restic", "pigz", "cp", "bash")}
        lv = args.litevault or os.path.join(REPO, "target", "release", "litevault")
        self.litevault = lv if os.path.isfile(lv) and os.access(lv, os.X_OK) else None
        self.lv_path_wanted = lv
        self.step = 0

    # ---- rows -----------------------------------------------------------------------------

    def add(self, tool: str, op: str, kind: str, *, status: str = "ok", reason: str = "",
            res: Result | None = None, walls: list[float] | None = None, out_bytes: int | None = None,
            cmd: str = "", tree: bool = False, notes: str = "", extra: dict | None = None) -> dict:
        row = {"tool": tool, "operation": op, "kind": kind, "status": status, "reason": reason,
               "command": cmd, "wall_s": None, "cpu_s": None, "peak_rss_mib": None,
               "peak_rss_process": None, "rss_sum_mib": None, "processes_seen": None,
               "pipeline": tree, "output_bytes": out_bytes, "notes": notes, "runs": None}
        if res is not None:
            row["wall_s"] = round(statistics.median(walls), 4) if walls else round(res.wall, 4)
            row["runs"] = [round(w, 4) for w in walls] if walls else [round(res.wall, 4)]
            row["cpu_s"] = None if res.cpu is None else round(res.cpu, 3)
            if res.peak_kib is not None:
                row["peak_rss_mib"] = round(res.peak_kib / 1024, 1)
                row["peak_rss_process"] = res.peak_proc
                row["rss_sum_mib"] = round(res.sum_kib / 1024, 1)
                row["processes_seen"] = res.nprocs
        if extra:
            row.update(extra)
        self.rows.append(row)
        self.step += 1
        if status == "ok":
            rss = "n/a" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.1f} MiB"
            outs = "" if out_bytes is None else f", output {out_bytes / MIB:.1f} MiB"
            log(f"[{self.step:2d}] {tool} {op}: {row['wall_s']:.2f} s, peak RSS {rss}{outs}")
        else:
            log(f"[{self.step:2d}] {tool} {op}: {status}: {reason}")
        return row

    def skip(self, tool: str, op: str, kind: str, reason: str) -> dict:
        return self.add(tool, op, kind, status="skipped", reason=reason)

    def missing(self, *names: str) -> str | None:
        gone = [n for n in names if not self.tools.get(n)]
        if gone:
            pkgs = " ".join(sorted({"gunzip": "gzip", "cp": "coreutils"}.get(n, n) for n in gone))
            return f"not installed ({', '.join(gone)}; apt-get install -y {pkgs})"
        return None

    def run_row(self, tool: str, op: str, kind: str, argv: list[str], outputs: list[str], *,
                shell: bool = False, keep: str | None = None, size_paths: list[str] | None = None,
                notes: str = "", pre=None, check=None) -> dict:
        """Run one row (--repeat times), median wall, max RSS; outputs removed between runs and
        after (unless keep names an artifact)."""
        if shell:
            script = argv[0]
            argv = [self.tools["bash"] or "bash", "-c", "set -o pipefail; " + script]
            cmd = script
        else:
            cmd = " ".join(shlex.quote(a) for a in argv)
        results = []
        for _ in range(max(1, self.args.repeat)):
            remove(*outputs)
            if pre:
                pre()
            os.sync()
            res = measure(argv, env=self.env, cwd=self.work, tree=shell, timeout=self.args.timeout)
            problem = None
            if res.timed_out:
                problem = f"timeout after {self.args.timeout:.0f} s"
            elif res.rc != 0:
                problem = res.error_line()
            elif check:
                problem = check(res)
            if problem:
                remove(*outputs)
                return self.add(tool, op, kind, status="failed", cmd=cmd, tree=shell,
                                reason=problem)
            results.append(res)
        walls = [r.wall for r in results]
        last = results[-1]
        best = max(results, key=lambda r: r.peak_kib or 0)  # peak RSS: the max over the runs
        if len(results) > 1:
            cpus = [r.cpu for r in results if r.cpu is not None]
            best.cpu = statistics.median(cpus) if cpus else None
        out_bytes = (sum(path_size(p) for p in (size_paths or outputs) if os.path.exists(p))
                     if outputs else None)
        row = self.add(tool, op, kind, res=best, walls=walls, out_bytes=out_bytes, cmd=cmd,
                       tree=shell, notes=notes)
        row["_stdout"] = last.stdout
        if keep:
            self.artifacts[keep] = outputs[0]
        elif not self.args.keep:
            remove(*outputs)
        os.sync()
        return row

    def o(self, name: str) -> str:
        return os.path.join(self.out, name)

    # ---- backups --------------------------------------------------------------------------

    def backups(self, db: str) -> None:
        t = self.tools
        q = shlex.quote
        # Floors
        self.run_row("cp", "copy (floor)", "backup", [t["cp"] or "cp", db, self.o("copy.db")],
                     [self.o("copy.db")])
        if self.missing("zstd"):
            self.skip("zstd -T0 -3", "compress (floor)", "backup", self.missing("zstd"))
            self.skip("zstd -T0 -3 + fsync", "compress + fsync (floor)", "backup", self.missing("zstd"))
        else:
            self.run_row("zstd -T0 -3", "compress (floor)", "backup",
                         [t["zstd"], "-q", "-T0", "-3", "-f", db, "-o", self.o("db.zst")],
                         [self.o("db.zst")], keep="zst")
            self.run_row("zstd -T0 -3 + fsync", "compress + fsync (floor)", "backup",
                         [f"zstd -q -T0 -3 -f {q(db)} -o {q(self.o('db2.zst'))} && sync {q(self.o('db2.zst'))}"],
                         [self.o("db2.zst")], shell=True,
                         notes="litevault fsyncs its archive; plain zstd does not")
        if self.missing("pigz"):
            self.skip("pigz -6", "compress (floor)", "backup", self.missing("pigz"))
        else:
            self.run_row("pigz -6", "compress (floor)", "backup",
                         [f"pigz -6 -c {q(db)} > {q(self.o('db.pigz.gz'))}"], [self.o("db.pigz.gz")],
                         shell=True)

        # litevault
        if not self.litevault:
            why = (f"not built ({self.lv_path_wanted} missing): run `cargo build --release` "
                   "in the repository root")
            for op in ("backup (zstd)", "backup --compression gzip", "backup --method vacuum"):
                self.skip("litevault", op, "backup", why)
        else:
            def lv_check(res):
                try:
                    json.loads(res.stdout)
                except ValueError:
                    return "backup --json printed no JSON report"
                return None
            lv = self.litevault
            row = self.run_row("litevault", "backup (zstd)", "backup",
                               [lv, "backup", db, "-o", self.o("lv.tar.zst"), "--json"],
                               [self.o("lv.tar.zst")], keep="lv_zst", check=lv_check)
            if row["status"] == "ok":
                try:
                    rep = json.loads(row["_stdout"])
                    phases = ", ".join(f"{p['name']} {p['ms'] / 1000:.2f} s"
                                       for p in rep.get("phases") or [])
                    how = "streamed" if rep.get("streamed") else "temp copy"
                    row["notes"] = (f"{how}; {phases or 'no phases'} "
                                    f"({rep.get('duration_ms', 0) / 1000:.2f} s internal)")
                except (ValueError, TypeError):
                    pass
                show = subprocess.run([lv, "show", self.o("lv.tar.zst"), "--json"],
                                      capture_output=True, text=True, env=self.env)
                try:
                    man = json.loads(show.stdout)
                    man = man.get("manifest", man)
                    self.facts["sqlite_litevault"] = man.get("sqlite_version")
                except ValueError:
                    pass
            self.run_row("litevault", "backup --compression gzip", "backup",
                         [lv, "backup", db, "-o", self.o("lv.tar.gz"), "--compression", "gzip",
                          "--json"], [self.o("lv.tar.gz")], check=lv_check)
            self.run_row("litevault", "backup --method vacuum", "backup",
                         [lv, "backup", db, "-o", self.o("lv-vacuum.tar.zst"), "--method",
                          "vacuum", "--json"], [self.o("lv-vacuum.tar.zst")], check=lv_check)

        # sqlite3 CLI
        why = self.missing("sqlite3", "gzip")
        if why:
            self.skip("sqlite3 .backup + gzip -6", "backup", "backup", why)
        else:
            bk = self.o("sq-backup.db")
            dot = '.backup "' + bk.replace('"', '\\"') + '"'
            self.run_row("sqlite3 .backup + gzip -6", "backup", "backup",
                         [f"sqlite3 {q(db)} {q(dot)} && gzip -6 -f {q(bk)}"],
                         [bk + ".gz", bk], shell=True, size_paths=[bk + ".gz"],
                         notes="two steps, total time")
        why = self.missing("sqlite3")
        if why:
            self.skip("sqlite3 VACUUM INTO", "backup (uncompressed)", "backup", why)
        else:
            vi = self.o("sq-vacuum.db")
            self.run_row("sqlite3 VACUUM INTO", "backup (uncompressed)", "backup",
                         [t["sqlite3"], db, "VACUUM INTO '" + vi.replace("'", "''") + "'"], [vi])
        why = self.missing("sqlite3", "gzip")
        if why:
            self.skip("sqlite3 .dump | gzip -6", "backup (SQL text)", "backup", why)
        else:
            self.run_row("sqlite3 .dump | gzip -6", "backup (SQL text)", "backup",
                         [f"sqlite3 {q(db)} .dump | gzip -6 > {q(self.o('dump.sql.gz'))}"],
                         [self.o("dump.sql.gz")], shell=True, keep="sql_gz")

        # Python
        py = sys.executable
        self.run_row("python backup() + tarfile gz", "backup", "backup",
                     [py, "-c", PY_BACKUP_TAR, db, self.o("py.tar.gz"), self.o("py-backup.tmp.db")],
                     [self.o("py.tar.gz"), self.o("py-backup.tmp.db")], keep="py_tgz",
                     size_paths=[self.o("py.tar.gz")], notes="tar.gz with metadata.json")
        self.run_row("python iterdump() + gzip", "backup (SQL text)", "backup",
                     [py, "-c", PY_ITERDUMP, db, self.o("iterdump.sql.gz")],
                     [self.o("iterdump.sql.gz")])

        # restic
        if self.args.skip_restic:
            self.skip("restic", "backup (first)", "backup", "--skip-restic")
            self.skip("restic", "backup after 1% update", "backup", "--skip-restic")
        elif self.missing("restic"):
            self.skip("restic", "backup (first)", "backup", self.missing("restic"))
            self.skip("restic", "backup after 1% update", "backup", self.missing("restic"))
        else:
            self.restic_backups(db)

    def restic_env(self) -> dict:
        env = dict(self.env)
        env["RESTIC_PASSWORD"] = "litevault-bench"
        env["RESTIC_REPOSITORY"] = os.path.join(self.work, "restic-repo")
        env["RESTIC_CACHE_DIR"] = os.path.join(self.work, "restic-cache")
        env["RESTIC_PROGRESS_FPS"] = "0.2"
        return env

    def restic_backups(self, db: str) -> None:
        env = self.restic_env()
        repo = env["RESTIC_REPOSITORY"]
        restic = self.tools["restic"]
        remove(repo, env["RESTIC_CACHE_DIR"])
        init = subprocess.run([restic, "init"], capture_output=True, text=True, env=env)
        if init.returncode != 0:
            reason = "restic init failed: " + (init.stderr.strip().splitlines() or ["?"])[-1]
            self.add("restic", "backup (first)", "backup", status="failed", reason=reason)
            self.add("restic", "backup after 1% update", "backup", status="failed", reason=reason)
            return
        srcdir = os.path.join(self.work, "restic-src")
        os.makedirs(srcdir, exist_ok=True)
        src = os.path.join(srcdir, "app.db")
        remove(src)
        shutil.copyfile(db, src)
        os.sync()

        def summary(res: Result) -> dict:
            for line in reversed(res.stdout.splitlines()):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("message_type") == "summary":
                    return obj
            return {}

        def one(op: str) -> dict | None:
            before = path_size(repo)
            argv = [restic, "backup", "--json", src]
            os.sync()
            res = measure(argv, env=env, cwd=self.work, timeout=self.args.timeout)
            cmd = "restic backup " + src
            if res.rc != 0 or res.timed_out:
                self.add("restic", op, "backup", status="failed", cmd=cmd,
                         reason="timeout" if res.timed_out else res.error_line())
                return None
            added = path_size(repo) - before
            s = summary(res)
            notes = "repo size delta"
            if s:
                notes += f"; restic data_added {s.get('data_added', 0) / MIB:.1f} MiB"
                if "data_added_packed" in s:
                    notes += f" ({s['data_added_packed'] / MIB:.1f} MiB packed)"
            return self.add("restic", op, "backup", res=res, out_bytes=added, cmd=cmd, notes=notes)

        if one("backup (first)") is None:
            self.skip("restic", "backup after 1% update", "backup", "first restic backup failed")
            return
        # Update 1% of the rows (documents, comments, users) of the copy, then back up again.
        con = sqlite3.connect(src, isolation_level=None)
        con.execute("BEGIN")
        con.execute("UPDATE documents SET body = body || ' Revised.', version = version + 1, "
                    "updated_at = '2026-11-21T10:15:00Z' WHERE id % 100 = 1")
        con.execute("UPDATE comments SET body = body || ' (edited)' WHERE id % 100 = 2")
        con.execute("UPDATE users SET last_seen = '2026-11-21T10:15:00Z' WHERE id % 100 = 3")
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        if one("backup after 1% update") is not None:
            self.artifacts["restic"] = repo

    # ---- restores -------------------------------------------------------------------------

    def restores(self) -> None:
        t = self.tools
        q = shlex.quote
        a = self.artifacts
        new = self.o("restored.db")
        if self.missing("zstd"):
            self.skip("zstd -d", "decompress (floor)", "restore", self.missing("zstd"))
        elif "zst" not in a:
            self.skip("zstd -d", "decompress (floor)", "restore", "no .zst (its backup row failed)")
        else:
            self.run_row("zstd -d", "decompress (floor)", "restore",
                         [t["zstd"], "-q", "-d", "-f", a["zst"], "-o", new], [new])
        if not self.litevault:
            self.skip("litevault", "restore --quick", "restore", "not built")
            self.skip("litevault", "verify", "verify", "not built")
        elif "lv_zst" not in a:
            self.skip("litevault", "restore --quick", "restore", "no archive (backup row failed)")
            self.skip("litevault", "verify", "verify", "no archive (backup row failed)")
        else:
            self.run_row("litevault", "restore --quick", "restore",
                         [self.litevault, "restore", a["lv_zst"], new, "--quick", "--json"], [new],
                         notes="verified before the rename (storage checks: quick_check, foreign keys, checksums; FTS checks skipped by --quick)")
            self.run_row("litevault", "verify", "verify",
                         [self.litevault, "verify", a["lv_zst"], "--json"], [],
                         notes="full integrity_check + FTS checks")
        why = self.missing("tar", "gzip")
        if why:
            self.skip("tar -xzf + mv", "restore (python tarball)", "restore", why)
        elif "py_tgz" not in a:
            self.skip("tar -xzf + mv", "restore (python tarball)", "restore", "no tarball")
        else:
            d = self.o("untar")
            self.run_row("tar -xzf + mv", "restore (python tarball)", "restore",
                         [f"mkdir -p {q(d)} && tar -xzf {q(a['py_tgz'])} -C {q(d)} database.sqlite "
                          f"&& mv {q(os.path.join(d, 'database.sqlite'))} {q(new)}"],
                         [new, d], shell=True, size_paths=[new])
        why = self.missing("sqlite3", "gunzip")
        if why:
            self.skip("gunzip | sqlite3", "restore (SQL text)", "restore", why)
        elif "sql_gz" not in a:
            self.skip("gunzip | sqlite3", "restore (SQL text)", "restore", "no .sql.gz")
        else:
            self.run_row("gunzip | sqlite3", "restore (SQL text)", "restore",
                         [f"gunzip -c {q(a['sql_gz'])} | sqlite3 -bail {q(new)}"], [new],
                         shell=True)
        if self.args.skip_restic:
            self.skip("restic", "restore", "restore", "--skip-restic")
        elif self.missing("restic"):
            self.skip("restic", "restore", "restore", self.missing("restic"))
        elif "restic" not in a:
            self.skip("restic", "restore", "restore", "no restic snapshot")
        else:
            d = self.o("restic-restore")
            env = self.restic_env()
            remove(d)
            os.sync()
            argv = [t["restic"], "restore", "latest", "--target", d]
            res = measure(argv, env=env, cwd=self.work, timeout=self.args.timeout)
            if res.rc != 0 or res.timed_out:
                self.add("restic", "restore", "restore", status="failed", cmd=" ".join(argv),
                         reason="timeout" if res.timed_out else res.error_line())
            else:
                self.add("restic", "restore", "restore", res=res, out_bytes=path_size(d),
                         cmd=" ".join(argv), notes="latest snapshot (after the 1% update)")
            remove(d)
        for key in ("zst", "lv_zst", "py_tgz", "sql_gz"):
            if key in a and not self.args.keep:
                remove(a[key])
        if not self.args.keep:
            remove(os.path.join(self.work, "restic-repo"), os.path.join(self.work, "restic-cache"),
                   os.path.join(self.work, "restic-src"))
        os.sync()

    # ---- writer during backup -------------------------------------------------------------

    def writer_test(self, db: str) -> None:
        secs = self.args.writer_seconds
        if not self.litevault:
            self.writer = {"status": "skipped", "reason": "litevault not built"}
            self.skip("litevault", "backup during writer", "backup", "not built")
            return
        wdb = os.path.join(self.work, "writer.db")
        remove(wdb)
        shutil.copyfile(db, wdb)
        os.sync()
        wlog = os.path.join(self.work, "writer.log")
        stop = os.path.join(self.work, "writer.stop")
        warm = 1.0

        def start_writer(max_s: float):
            remove(wlog, stop)
            return subprocess.Popen([sys.executable, "-c", PY_WRITER, wdb, wlog, stop, str(max_s)],
                                    env=self.env, cwd=self.work, stderr=subprocess.PIPE)

        def finish(p):
            open(stop, "w").close()
            _, err = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError("writer failed: " + err.decode(errors="replace").strip()[-300:])
            return read_writer_log(wlog)

        def stats(ends, lat, windows):
            # ends are increasing and each commit starts after the previous one ended.
            n = 0
            dur = 0.0
            worst = 0.0
            lats = []
            for s, e in windows:
                dur += e - s
                lo, hi = bisect.bisect_left(ends, s), bisect.bisect_right(ends, e)
                n += hi - lo
                lats.extend(lat[lo:hi])
                i = lo
                while i < len(ends) and ends[i] - lat[i] <= e:  # commits overlapping the window
                    worst = max(worst, lat[i])
                    i += 1
            lats.sort()
            p99 = lats[int(0.99 * (len(lats) - 1))] if lats else None
            return {"commits": n, "seconds": round(dur, 3),
                    "commits_per_s": round(n / dur, 1) if dur > 0 else None,
                    "worst_commit_ms": round(worst * 1000, 2),
                    "p99_commit_ms": None if p99 is None else round(p99 * 1000, 3)}

        try:
            log(f"writer alone for {secs:.0f} s ...")
            p = start_writer(secs + warm)
            t_start = time.monotonic()
            p.wait(timeout=secs + warm + 120)
            ends, lat = finish(p)
            base = stats(ends, lat, [(t_start + warm, ends[-1] if ends else t_start + warm)])

            log(f"writer with litevault backups for ~{secs:.0f} s ...")
            p = start_writer(secs * 10 + 600)
            time.sleep(warm)
            windows = []
            walls = []
            best = None
            out = self.o("writer-backup.tar.zst")
            t_first = time.monotonic()
            failed = None
            while True:
                remove(out)
                s = time.monotonic()
                res = measure([self.litevault, "backup", wdb, "-o", out, "--json"], env=self.env,
                              cwd=self.work, timeout=self.args.timeout)
                e = time.monotonic()
                if res.rc != 0:
                    failed = res.error_line()
                    break
                windows.append((s, e))
                walls.append(res.wall)
                if best is None or (res.peak_kib or 0) > (best.peak_kib or 0):
                    best = res
                remove(out)
                if e - t_first >= secs or p.poll() is not None:
                    break
            time.sleep(0.2)
            ends, lat = finish(p)
            if failed:
                raise RuntimeError("litevault backup during writer failed: " + failed)
            withb = stats(ends, lat, windows)
            ratio = (withb["commits_per_s"] / base["commits_per_s"]
                     if base["commits_per_s"] and withb["commits_per_s"] is not None else None)
            self.writer = {"status": "ok", "seconds": secs, "synchronous": "NORMAL",
                           "alone": base, "with_backup": withb, "backups": len(windows),
                           "ratio": None if ratio is None else round(ratio, 3)}
            best.wall = statistics.median(walls)
            self.add("litevault", "backup during writer", "backup", res=best, walls=walls,
                     cmd=f"litevault backup writer.db -o X (x{len(walls)})",
                     notes=f"{len(walls)} backup(s) while the writer commits; see writer table")
        except Exception as e:  # report, never crash the whole run
            self.writer = {"status": "failed", "reason": str(e)}
            self.add("litevault", "backup during writer", "backup", status="failed", reason=str(e))
        finally:
            if not self.args.keep:
                remove(wdb, wlog, stop)

    # ---- machine facts --------------------------------------------------------------------

    def machine(self) -> dict:
        cpu = None
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    key = line.split(":")[0].strip().lower()
                    if key in ("model name", "hardware", "cpu model", "processor") and ":" in line:
                        val = line.split(":", 1)[1].strip()
                        if key != "processor" or not val.isdigit():
                            cpu = val
                            break
        except OSError:
            pass
        ram = None
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemTotal:"):
                        ram = round(int(line.split()[1]) / 1024 / 1024, 1)
        except OSError:
            pass
        fs = None
        try:
            best = ""
            real = os.path.realpath(self.work)
            with open("/proc/mounts") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")) \
                            and len(parts[1]) >= len(best):
                        best, fs = parts[1], parts[2]
        except OSError:
            pass
        v = {
            "nproc": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": cpu or platform.processor() or "unknown",
            "ram_gib": ram,
            "kernel": platform.release(),
            "work_fs": fs,
            "python": platform.python_version(),
            "sqlite_python": sqlite3.sqlite_version,
            "sqlite_cli": None,
            "sqlite_litevault": None,
            "litevault": tool_version([self.litevault, "--version"]) if self.litevault else None,
        }
        if self.tools["sqlite3"]:
            s = tool_version([self.tools["sqlite3"], "--version"])
            v["sqlite_cli"] = s.split()[0] if s else None
        for name, argv in (("zstd", ["-V"]), ("gzip", ["--version"]), ("pigz", ["--version"]),
                           ("restic", ["version"]), ("tar", ["--version"])):
            v[name] = tool_version([self.tools[name]] + argv) if self.tools[name] else "not installed"
        return v

    # ---- report ---------------------------------------------------------------------------

    def find(self, tool: str, op: str) -> dict | None:
        for r in self.rows:
            if r["tool"] == tool and r["operation"] == op and r["status"] == "ok":
                return r
        return None

    def ratios(self) -> None:
        zb = self.find("zstd -T0 -3", "compress (floor)")
        zd = self.find("zstd -d", "decompress (floor)")
        for r in self.rows:
            r["ratio_vs"] = None
            r["time_ratio"] = None
            r["size_ratio"] = None
            if r["status"] != "ok":
                continue
            ref = zb if r["kind"] == "backup" else zd
            r["ratio_vs"] = "zstd -T0 -3" if r["kind"] == "backup" else "zstd -d"
            if ref and ref["wall_s"]:
                r["time_ratio"] = round(r["wall_s"] / ref["wall_s"], 3)
            if r["kind"] == "backup" and zb and zb["output_bytes"] and r["output_bytes"]:
                r["size_ratio"] = round(r["output_bytes"] / zb["output_bytes"], 3)

    def check_targets(self) -> None:
        T = self.targets

        def add(name, ok, detail):
            T.append({"target": name, "result": "SKIP" if ok is None else ("PASS" if ok else "FAIL"),
                      "detail": detail})

        lv = self.find("litevault", "backup (zstd)")
        zb = self.find("zstd -T0 -3", "compress (floor)")
        zf = self.find("zstd -T0 -3 + fsync", "compress + fsync (floor)")
        sq = self.find("sqlite3 .backup + gzip -6", "backup")
        lr = self.find("litevault", "restore --quick")
        zd = self.find("zstd -d", "decompress (floor)")
        lvv = self.find("litevault", "verify")

        name = "backup time <= 1.3x zstd -T0 -3"
        if lv and zb:
            x = lv["wall_s"] / zb["wall_s"]
            extra = ""
            if zf:
                extra = f"; vs zstd + fsync {zf['wall_s']:.2f} s: {lv['wall_s'] / zf['wall_s']:.2f}x"
            add(name, x <= 1.3, f"litevault {lv['wall_s']:.2f} s, zstd {zb['wall_s']:.2f} s: {x:.2f}x{extra}")
        else:
            add(name, None, "missing row (litevault or zstd)")
        name = "backup >= 8x faster than sqlite3 .backup + gzip -6"
        if lv and sq:
            x = sq["wall_s"] / lv["wall_s"]
            add(name, x >= 8, f"sqlite3+gzip {sq['wall_s']:.2f} s, litevault {lv['wall_s']:.2f} s: {x:.1f}x faster")
        else:
            add(name, None, "missing row (litevault or sqlite3/gzip)")
        name = "archive size <= 1.02x zstd -3 output"
        if lv and zb:
            x = lv["output_bytes"] / zb["output_bytes"]
            add(name, x <= 1.02, f"litevault {lv['output_bytes'] / MIB:.2f} MiB, zstd "
                                 f"{zb['output_bytes'] / MIB:.2f} MiB: {x:.3f}x")
        else:
            add(name, None, "missing row (litevault or zstd)")
        name = "restore time <= 2x zstd -d"
        if lr and zd:
            x = lr["wall_s"] / zd["wall_s"]
            add(name, x <= 2, f"litevault restore --quick {lr['wall_s']:.2f} s, zstd -d "
                              f"{zd['wall_s']:.2f} s: {x:.2f}x")
        else:
            add(name, None, "missing row (litevault restore or zstd -d)")
        limit_mib = 100e6 / MIB
        for label, r in (("backup", lv), ("restore", lr), ("verify", lvv)):
            name = f"peak RSS of litevault {label} < 100 MB"
            if r and r["peak_rss_mib"] is not None:
                add(name, r["peak_rss_mib"] < limit_mib,
                    f"{r['peak_rss_mib']:.1f} MiB (limit {limit_mib:.1f} MiB = 100 MB)")
            else:
                add(name, None, "missing row or no RSS reading")
        name = "writer keeps >= 80% of its commit rate during backup"
        w = self.writer
        if w.get("status") == "ok" and w.get("ratio") is not None:
            add(name, w["ratio"] >= 0.8,
                f"{w['with_backup']['commits_per_s']:.0f} vs {w['alone']['commits_per_s']:.0f} "
                f"commits/s: {w['ratio'] * 100:.0f}%, worst commit "
                f"{w['with_backup']['worst_commit_ms']:.1f} ms (alone {w['alone']['worst_commit_ms']:.1f} ms)")
        else:
            add(name, None, w.get("reason", "writer test did not run"))

    def markdown(self) -> str:
        m = self.facts
        db = self.dbinfo
        lines = []
        lines.append("## Machine")
        lines.append("")
        lines.append(f"- CPU: {m['cpu_model']}; nproc {m['nproc']} ({m['cpus_usable']} usable); "
                     f"RAM {m['ram_gib']} GiB; kernel {m['kernel']}; work dir fs {m['work_fs']}")
        lines.append(f"- SQLite: litevault (bundled) {m.get('sqlite_litevault') or 'n/a'}, "
                     f"sqlite3 CLI {m['sqlite_cli'] or 'not installed'}, Python {m['python']} "
                     f"sqlite3 module {m['sqlite_python']}")
        lines.append(f"- Tools: {m['litevault'] or 'litevault not built'}; {m['zstd']}; {m['gzip']}; "
                     f"pigz: {m['pigz']}; restic: {m['restic']}")
        lines.append("")
        lines.append("## Database")
        lines.append("")
        rows = db.get("rows", {})
        main = ", ".join(f"{k} {rows[k]:,}" for k in ("users", "documents", "comments", "attachments",
                                                        "audit_log") if k in rows)
        lines.append(f"- {db['bytes'] / MIB:.1f} MiB ({db.get('page_count')} pages of "
                     f"{db.get('page_size')} B, {db.get('freelist_count')} free), journal mode "
                     f"{db.get('journal_mode')}, seed {db['seed']}, "
                     f"{'cached' if db.get('cached') else 'generated in %s s' % db.get('generation_s')}")
        lines.append(f"- rows: {main}; FTS5 external-content index over documents(title, body); "
                     f"{db.get('indexes')} indexes, {db.get('views')} view, {db.get('triggers')} triggers")
        lines.append(f"- page cache warm (the database was read once before the rows); "
                     f"repeat {self.args.repeat} (median wall)")
        lines.append("")
        lines.append("## Results")
        lines.append("")
        lines.append("| tool | operation | wall s | peak RSS MiB | output MiB | ratio (time) | "
                     "output vs zstd | CPU s | notes |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        dagger = False
        for r in self.rows:
            tool, op = cell(r["tool"]), cell(r["operation"])
            if r["status"] != "ok":
                lines.append(f"| {tool} | {op} | — | — | — | — | — | — | "
                             f"{cell(r['status'] + ': ' + r['reason'])} |")
                continue
            rss = "n/a" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.1f}"
            if r["pipeline"] and r["peak_rss_mib"] is not None:
                rss += f" † ({r['peak_rss_process']})"
                dagger = True
            out = "—" if r["output_bytes"] is None or (r["kind"] == "verify") else f"{r['output_bytes'] / MIB:.1f}"
            tr = "—" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}x"
            sr = "—" if r["size_ratio"] is None else f"{r['size_ratio']:.3f}"
            cpu = "—" if r["cpu_s"] is None else f"{r['cpu_s']:.2f}"
            lines.append(f"| {tool} | {op} | {r['wall_s']:.2f} | {rss} | {out} | "
                         f"{tr} | {sr} | {cpu} | {cell(r['notes'])} |")
        lines.append("")
        lines.append("ratio (time): wall time divided by `zstd -T0 -3` for backups, by `zstd -d` for "
                     "restores and verify. output vs zstd: output size divided by `zstd -3` output. "
                     "CPU s: user+sys of the process and its children.")
        if dagger:
            lines.append("† shell pipeline or sequence: the largest single-process VmHWM among the "
                         "processes seen (in parentheses); the JSON also has the sum of per-process "
                         "peaks.")
        lines.append("")
        lines.append("## Writer during backup")
        lines.append("")
        w = self.writer
        if w.get("status") == "ok":
            lines.append("| scenario | commits/s | worst commit ms | p99 commit ms | seconds measured |")
            lines.append("|---|---:|---:|---:|---:|")
            for label, s in (("writer alone", w["alone"]),
                             (f"writer + litevault backup ({w['backups']} run(s))", w["with_backup"])):
                lines.append(f"| {label} | {s['commits_per_s']:.0f} | {s['worst_commit_ms']:.1f} | "
                             f"{s['p99_commit_ms']} | {s['seconds']:.1f} |")
            lines.append("")
            lines.append(f"ratio: {w['ratio'] * 100:.0f}% of the writer's commit rate kept "
                         f"(Python writer, WAL, synchronous=NORMAL, one small INSERT + UPDATE per "
                         f"transaction)")
        else:
            lines.append(f"{w.get('status', 'skipped')}: {w.get('reason', '')}")
        lines.append("")
        lines.append("## Targets")
        lines.append("")
        for t in self.targets:
            lines.append(f"{t['result']}  {t['target']}: {t['detail']}")
        return "\n".join(lines)

    # ---- main -----------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        for d in (self.work, self.out, self.lvdir, self.env["TMPDIR"]):
            os.makedirs(d, exist_ok=True)
        gone = [n for n in ("sqlite3", "zstd", "restic", "pigz") if not self.tools[n]]
        log(f"hint: {INSTALL_HINT}   (pigz optional)")
        if gone:
            log(f"      missing here: {', '.join(gone)} (their rows will be skipped)")
        if not self.litevault:
            log(f"hint: {self.lv_path_wanted} not found: build it with `cargo build --release`")
        db, self.dbinfo = ensure_db(self.work, a.size_mb, a.seed)
        self.dbinfo["bytes"] = os.path.getsize(db)
        # Warm the page cache so that every row reads the database from memory.
        with open(db, "rb") as f:
            while f.read(8 * MIB):
                pass
        self.facts = self.machine()
        self.backups(db)
        self.restores()
        if a.skip_writer:
            self.writer = {"status": "skipped", "reason": "--skip-writer"}
        else:
            self.writer_test(db)
        self.ratios()
        self.check_targets()
        for r in self.rows:
            r.pop("_stdout", None)
        report = self.markdown()
        print(report, file=sys.stderr if a.json == "-" else sys.stdout, flush=True)
        if a.json is not None:
            doc = {"format": "litevault-bench/1", "created_at": iso(time.time()),
                   "args": {"size_mb": a.size_mb, "seed": a.seed, "repeat": a.repeat,
                            "writer_seconds": a.writer_seconds, "skip_restic": a.skip_restic},
                   "machine": self.facts, "database": self.dbinfo, "rows": self.rows,
                   "writer": self.writer, "targets": self.targets}
            path = a.json or os.path.join(self.work, "results.json")
            if path == "-":
                json.dump(doc, sys.stdout, indent=2)
                print()
            else:
                with open(path, "w") as f:
                    json.dump(doc, f, indent=2)
                log(f"JSON written to {path}")
        if a.strict and any(t["result"] == "FAIL" for t in self.targets):
            return 1
        return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark litevault against the usual SQLite backup "
                                             "tools (see bench/README.md).")
    ap.add_argument("--size-mb", type=int, default=1024, help="database size in MiB (default 1024)")
    ap.add_argument("--work", default=os.path.join(HERE, "work"),
                    help="work directory for the database and outputs (default bench/work)")
    ap.add_argument("--skip-restic", action="store_true", help="do not run the restic rows")
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                    help="also write the results as JSON (default WORK/results.json; '-' = stdout)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per row (median wall time, max RSS); default 1")
    ap.add_argument("--writer-seconds", type=float, default=10.0,
                    help="seconds of writer load, alone and with backups (default 10)")
    ap.add_argument("--skip-writer", action="store_true", help="do not run the writer test")
    ap.add_argument("--litevault", help="litevault binary (default target/release/litevault)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per-row timeout in seconds")
    ap.add_argument("--keep", action="store_true", help="keep outputs in WORK/out")
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target FAILs")
    args = ap.parse_args(argv)
    if args.size_mb < 1:
        ap.error("--size-mb must be >= 1")
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
