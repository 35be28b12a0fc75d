#!/usr/bin/env python3
"""S3 location benchmark: litevault backups to a real S3 server on loopback against local ones.

    python3 bench/s3.py [--size-mb 300] [--repeat 3] [--archives 100] [--work DIR] [--json [PATH]]
                        [--far RTT_MS,MBPS] [--litevault PATH] [--compare PATH]

Uses the application database of bench/run.py (same generator, same cache, WAL mode), starts
SeaweedFS (`weed mini`, installed by `bash .ci/s3-setup.sh` into target/s3-venv) on loopback
ports, then measures in one run, interleaved, each litevault command as its own process (wall
time, CPU time, peak RSS polled from /proc):

  backup   litevault backup app.db --dir LOCAL             vs  --dir s3://bucket/bench
  restore  litevault restore s3://.../x.tar.zst new.db --quick (download | decompress | hash | write)
  verify   litevault verify s3://.../x.tar.zst --quick
  list     litevault list --dir s3://bucket/many  with --archives objects there
  restore far   the same restore through bench/shape.py, a proxy that gives each connection a
           round trip of RTT_MS and MBPS megabytes a second (`--far`, default 20,40: a bucket in
           another region), where reading the archive in several ranges at once pays

`--compare PATH` runs the restores with a second litevault build too, interleaved (an A/B of
two builds in one run); `--litevault PATH` measures that build instead of building this tree.

Issue 11's targets: the S3 backup within 1.5x of the local one in the same run; list of 100 remote
archives within 2 s; peak RSS of every command at most 100 MB.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the shared generator and measurement helpers)

REPO = run.REPO
MIB = run.MIB


def free_ports(n: int) -> list[int]:
    """n ports P below the ephemeral range with P and P + 10000 (weed's gRPC port) both free."""
    import random
    out = []
    while len(out) < n:
        p = random.randrange(11000, 22700)
        if any(abs(p - q) < 2 or abs(p + 10000 - q) < 2 or abs(p - q - 10000) < 2 for q in out):
            continue
        ok = True
        for port in (p, p + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            out.append(p)
    return out


class Weed:
    """One `weed mini` on loopback with one bucket, every port chosen free."""

    def __init__(self, work: str):
        self.weed = os.environ.get("LITEVAULT_TEST_WEED") or os.path.join(REPO, "target/s3-venv/bin/weed")
        if not os.path.exists(self.weed):
            subprocess.run(["bash", os.path.join(REPO, ".ci/s3-setup.sh")], check=True)
        self.dir = tempfile.mkdtemp(prefix="lv-bench-s3-", dir=work)
        self.bucket = "lv-bench"
        self.key, self.secret = "AKBENCH0000000000000", "benchsecret0000000000000000000000000000000"
        with open(os.path.join(self.dir, "s3.json"), "w") as f:
            json.dump({"identities": [{"name": "b", "credentials": [{"accessKey": self.key,
                       "secretKey": self.secret}], "actions": ["Admin", "Read", "List", "Tagging",
                                                               "Write"]}]}, f)
        os.makedirs(os.path.join(self.dir, "data"))
        names = ("s3", "filer", "master", "volume", "admin", "debug")
        p = dict(zip(names, free_ports(len(names))))
        self.port = p["s3"]
        self.filer_port = p["filer"]
        args = [self.weed, "mini", f"-dir={self.dir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={self.dir}/s3.json", "-webdav=false", "-admin.ui=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-bucket={self.bucket}",
                "-master.telemetry=false", "-s3.autoCreateBucket=false", f"-debug.port={p['debug']}"]
        for n in ("s3", "filer", "master", "volume", "admin"):
            args += [f"-{n}.port={p[n]}", f"-{n}.port.grpc={p[n] + 10000}"]
        self.log = open(os.path.join(self.dir, "weed.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(f"HEAD /{self.bucket} HTTP/1.0\r\n\r\n".encode())
                    if s.recv(100):
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"weed did not start; see {self.dir}/weed.log")
        time.sleep(1.5)  # the bucket is created just after the port opens

    def env(self) -> dict:
        e = dict(os.environ)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
            e.pop(k, None)
        e.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                 AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}",
                 AWS_EC2_METADATA_DISABLED="true",
                 AWS_CONFIG_FILE=os.path.join(self.dir, "none"),
                 AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.dir, "none"))
        return e

    def stats(self, prefix: str) -> tuple[int, int, list[str]]:
        """Objects under `prefix` of the bucket: count, bytes and names, read from the filer's
        JSON listing (SeaweedFS keeps buckets under /buckets; no S3 request is counted)."""
        import urllib.error
        import urllib.parse
        import urllib.request
        n, size, names = 0, 0, []
        stack = [f"/buckets/{self.bucket}/{prefix.strip('/')}"]
        while stack:
            path, last = stack.pop(), ""
            while True:
                url = (f"http://127.0.0.1:{self.filer_port}{urllib.parse.quote(path)}/?limit=1000"
                       f"&lastFileName={urllib.parse.quote(last)}")
                req = urllib.request.Request(url, headers={"Accept": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        data = json.load(r)
                except urllib.error.HTTPError as e:
                    if e.code == 404:
                        break
                    raise
                entries = data.get("Entries") or []
                for e in entries:
                    full = e["FullPath"]
                    if e.get("Mode", 0) & (1 << 31):
                        stack.append(full)
                    else:
                        n += 1
                        size += int(e.get("FileSize", 0))
                        names.append(full.rsplit("/", 1)[-1])
                if not data.get("ShouldDisplayLoadMore") or not entries:
                    break
                last = entries[-1]["FullPath"].rsplit("/", 1)[-1]
        return n, size, names

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--archives", type=int, default=100)
    ap.add_argument("--seed", type=int, default=run.DEFAULT_SEED)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--json", nargs="?", const="-", default=None)
    ap.add_argument("--far", default="20,40", help="RTT_MS,MBPS of the far restore ('' for none)")
    ap.add_argument("--litevault", default=None, help="the build to measure (default: build this tree)")
    ap.add_argument("--compare", default=None, help="a second build whose restores are measured too")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    lv = args.litevault or os.path.join(REPO, "target/release/litevault")
    if not args.litevault:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    db, marker = run.ensure_db(args.work, args.size_mb, args.seed)
    run.log(f"database {db}: {os.path.getsize(db) / MIB:.1f} MiB")
    weed = Weed(args.work)
    env = weed.env()
    local = os.path.join(args.work, "s3bench-local")
    rows = {"backup local": [], "backup s3": [], "restore s3 --quick": [], "verify s3 --quick": [],
            "list s3": []}
    far_env, shaper = None, None
    if args.far:
        rtt, mbps = (float(x) for x in args.far.split(","))
        shaper = subprocess.Popen([sys.executable, os.path.join(HERE, "shape.py"), "--to",
                                   f"127.0.0.1:{weed.port}", "--rtt-ms", str(rtt), "--mbps", str(mbps)],
                                  stdout=subprocess.PIPE, text=True)
        far_env = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{shaper.stdout.readline().strip()}")
        rows[f"restore far ({rtt:g} ms, {mbps:g} MB/s a connection)"] = []
    builds = [("", lv)] + ([(" [compare]", args.compare)] if args.compare else [])
    for tag, _ in builds[1:]:
        for k in [k for k in rows if k.startswith("restore")]:
            rows[k + tag] = []
    facts = {}
    try:
        def lv_run(name, argv, exe=lv, run_env=env):
            r = run.measure([exe] + argv + ["--json"], env=run_env)
            if r.rc != 0:
                raise SystemExit(f"{name} failed: {r.error_line()}")
            rows[name].append({"wall": r.wall, "cpu": r.cpu, "peak_mib": (r.peak_kib or 0) / 1024})
            return json.loads(r.stdout)

        last_remote = None
        for i in range(args.repeat):
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(local)
            rep = lv_run("backup local", ["backup", db, "--dir", local])
            facts["archive_bytes"] = rep["archive_size"]
            rep = lv_run("backup s3", ["backup", db, "--dir", f"s3://{weed.bucket}/bench"])
            last_remote = rep["archive"]
            out = os.path.join(args.work, "s3bench-restored.db")
            for tag, exe in builds:
                for name, e in [("restore s3 --quick", env)] + (
                        [(next(k for k in rows if k.startswith("restore far")), far_env)] if far_env else []):
                    run.remove(out, out + "-wal", out + "-shm")
                    lv_run(name + tag, ["restore", last_remote, out, "--quick"], exe, e)
            run.remove(out, out + "-wal", out + "-shm")
            lv_run("verify s3 --quick", ["verify", last_remote, "--quick"])
        # Many archives: one small real archive under N names.
        small = os.path.join(args.work, "s3bench-small")
        shutil.rmtree(small, ignore_errors=True)
        os.makedirs(small)
        src = os.path.join(REPO, "tests/fixtures/real/Chinook_Sqlite.sqlite")
        subprocess.run([lv, "backup", src, "-o", os.path.join(small, "seed.tar.zst"), "-q"], check=True)
        names = []
        for k in range(args.archives):
            n = os.path.join(small, f"chinook-202611{1 + k // 24:02d}T{k % 24:02d}0000Z.tar.zst")
            shutil.copy(os.path.join(small, "seed.tar.zst"), n)
            names.append(n)
        subprocess.run([lv, "copy", *names, f"s3://{weed.bucket}/many", "-q"], env=env, check=True)
        for i in range(args.repeat):
            listed = lv_run("list s3", ["list", "--dir", f"s3://{weed.bucket}/many"])
            facts["listed"] = len(listed)
    finally:
        if shaper:
            shaper.kill()
        weed.stop()

    med = {k: statistics.median(x["wall"] for x in v) for k, v in rows.items() if v}
    peak = {k: max(x["peak_mib"] for x in v) for k, v in rows.items() if v}
    ratio = med["backup s3"] / med["backup local"]
    lines = [f"S3 benchmark: {os.path.getsize(db) / MIB:.0f} MiB WAL database, archive "
             f"{facts['archive_bytes'] / MIB:.1f} MiB, SeaweedFS on loopback, median of {args.repeat}",
             "", "| operation | wall s (median) | runs | peak RSS MiB (max) |", "|---|---|---|---|"]
    for k, v in rows.items():
        walls = ", ".join(f"{x['wall']:.2f}" for x in v)
        lines.append(f"| {k} | {med[k]:.2f} | {walls} | {peak[k]:.1f} |")
    lines += ["",
              f"{'PASS' if ratio <= 1.5 else 'FAIL'} S3 backup {ratio:.2f}x the local backup (target <= 1.5x)",
              f"{'PASS' if med['list s3'] <= 2 else 'FAIL'} list of {facts['listed']} remote archives "
              f"{med['list s3']:.2f} s (target <= 2 s)",
              f"{'PASS' if max(peak.values()) <= 100 else 'FAIL'} peak RSS {max(peak.values()):.1f} MiB "
              "(target <= 100 MB)"]
    print("\n".join(lines))
    if args.json:
        doc = {"rows": rows, "median": med, "peak_mib": peak, "ratio": ratio, "facts": facts}
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
