#!/usr/bin/env python3
"""The Python package: its wheel (size, build time) and what a backup through Python costs
against the same backup through the command line.

    python3 bench/python.py [--size-mb 300] [--repeat 7] [--work DIR] [--json [PATH]]

Builds the wheel as a user's `pip wheel .` does (maturin, release profile) into WORK/wheel and
installs it into a venv of its own (WORK/py-venv), then on bench/run.py's application database
(same generator and cache), alternating runs:

  cli       target/release/litevault backup DB -o OUT --json       (the binary; built if missing)
  python    python -c "import litevault; litevault.backup(DB, output=OUT)"   (a whole process:
            interpreter start and import included)
  in-proc   the same call timed inside one Python process (what an application that already
            runs pays)

Medians and ratios to the CLI; issue 23's target: python within 1.05x of cli.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as benchrun  # noqa: E402  (the database generator and its cache)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def build_wheel(work):
    wheel_dir = os.path.join(work, "wheel")
    shutil.rmtree(wheel_dir, ignore_errors=True)
    venv = os.path.join(work, "py-venv")
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        sh([sys.executable, "-m", "venv", venv])
    py = os.path.join(venv, "bin", "python")
    log("building the wheel (release) ...")
    t0 = time.perf_counter()
    sh([py, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", ROOT, "-w", wheel_dir],
       env=dict(os.environ, MATURIN_PEP517_ARGS="--locked"))
    build_s = time.perf_counter() - t0
    [wheel] = [os.path.join(wheel_dir, f) for f in os.listdir(wheel_dir) if f.endswith(".whl")]
    sh([py, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", "--disable-pip-version-check", wheel])
    return py, wheel, build_s


def timed(argv):
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--json", nargs="?", const="", default=None)
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)

    binary = os.path.join(ROOT, "target", "release", "litevault")
    if not os.path.exists(binary):
        sh(["cargo", "build", "--release", "--locked"], cwd=ROOT)
    py, wheel, build_s = build_wheel(args.work)
    db, _ = benchrun.ensure_db(args.work, args.size_mb, args.seed)
    out = os.path.join(args.work, "py-out")
    db_bytes = os.path.getsize(db)

    def fresh(name):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        return os.path.join(out, name)

    inproc_script = (
        "import sys, time, litevault\n"
        "db, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])\n"
        "import os, shutil\n"
        "for i in range(n):\n"
        "    shutil.rmtree(out, ignore_errors=True); os.makedirs(out)\n"
        "    t0 = time.perf_counter(); litevault.backup(db, output=os.path.join(out, 'a.tar.zst'))\n"
        "    print(time.perf_counter() - t0, flush=True)\n"
    )
    cli, python = [], []
    timed([binary, "backup", db, "-o", fresh("warm.tar.zst")])  # the page cache warm for both
    def run_cli():
        cli.append(timed([binary, "backup", db, "-o", fresh("a.tar.zst"), "--json"]))

    def run_python():
        python.append(timed([py, "-c", "import sys, litevault; litevault.backup(sys.argv[1], output=sys.argv[2])",
                             db, fresh("a.tar.zst")]))

    for i in range(args.repeat):
        log(f"run {i + 1}/{args.repeat}")
        # Alternating which goes first: neither always follows the other's deletes and writeback.
        for f in ((run_cli, run_python) if i % 2 == 0 else (run_python, run_cli)):
            f()
    got = subprocess.run([py, "-c", inproc_script, db, out, str(args.repeat)], check=True,
                         capture_output=True, text=True)
    inproc = [float(x) for x in got.stdout.split()]
    shutil.rmtree(out, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in (("cli", cli), ("python", python), ("in-proc", inproc))}
    result = {
        "db_bytes": db_bytes,
        "repeat": args.repeat,
        "wheel": os.path.basename(wheel),
        "wheel_bytes": os.path.getsize(wheel),
        "wheel_build_s": round(build_s, 1),
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "ratio_to_cli": {k: round(v / med["cli"], 3) for k, v in med.items()},
        "runs_s": {"cli": cli, "python": python, "in-proc": inproc},
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(f"database {db_bytes / 2**20:.0f} MiB, {args.repeat} runs each (medians)")
    print(f"wheel {result['wheel']}: {result['wheel_bytes'] / 2**20:.1f} MiB, built in {build_s:.0f} s")
    print("| how | median s | x cli |")
    print("|---|---|---|")
    for k in ("cli", "python", "in-proc"):
        print(f"| {k} | {med[k]:.3f} | {med[k] / med['cli']:.3f} |")
    verdict = "PASS" if med["python"] <= 1.05 * med["cli"] else "FAIL"
    print(f"{verdict}: a backup through Python within 1.05x of the command line ({med['python'] / med['cli']:.3f}x)")
    if args.json is not None:
        path = args.json or os.path.join(args.work, "python.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
