#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a time budget, then prints what each run did.
#
#   fuzz/run.sh [--budget SECONDS] [--jobs N] [--sanitizer address|none] [--dev] [--work DIR] [--build-only] [TARGET...]
#
# TARGET...: names of fuzz/fuzz_targets/*.rs (default: every file there with a fuzz_target!).
# --budget: seconds per target (default 60). --jobs: targets run at once (default 1), each
# under `nice -n 19`. --sanitizer: cargo fuzz's -s (default address; none builds faster and
# runs about twice as fast, for a smoke run). --dev: an unoptimized build (a third of the
# build's CPU time, slower runs: for a short smoke run). --work: where the growing corpora,
# artifacts and logs go (default fuzz/target/work; the committed seeds in fuzz/corpus are only
# read). --build-only: build the targets and stop (a later run with the same options finds
# them built).
#
# Each target runs in libFuzzer's fork mode, which goes on after a crash, a timeout or an
# out-of-memory and saves each input under WORK/artifacts/TARGET/. The exit status is 1 when
# any target left an artifact. Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); the
# stable toolchain builds it with RUSTC_BOOTSTRAP=1 (set here), for this build only.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

budget=60
jobs=1
sanitizer=address
mode=()
work="$here/target/work"
targets=()
build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) budget="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --sanitizer) sanitizer="$2"; shift 2 ;;
    --dev) mode=(-D); shift ;;
    --work) work="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
# (--work relative to the caller's directory)
mkdir -p "$work"
work="$(cd "$work" && pwd)"
cd "$here"
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz_targets/*.rs; do
    grep -q 'fuzz_target!' "$f" && targets+=("$(basename "$f" .rs)")
  done
fi

export RUSTC_BOOTSTRAP=1
build_start=$(date +%s)
triple="$(rustc -vV | sed -n 's/^host: //p')"
# cargo fuzz's default build: optimized, with debug assertions and overflow checks (an
# arithmetic overflow is a panic, hence a finding). One target directory per sanitizer: a smoke build does not replace the binaries of a long run
# (fork mode starts the binary again for each of its jobs).
tdir="$here/target/san-$sanitizer${mode:+-dev}"
[ ${#mode[@]} -gt 0 ] && bindir_profile=debug || bindir_profile=release
bindir="$tdir/$triple/$bindir_profile"
# cargo fuzz builds one target or all of them.
if [ ${#targets[@]} -eq 1 ]; then
  nice -n 19 cargo fuzz build "${mode[@]}" -s "$sanitizer" --target-dir "$tdir" "${targets[0]}" 2>&1 | grep -v '^ *Compiling' >&2
else
  nice -n 19 cargo fuzz build "${mode[@]}" -s "$sanitizer" --target-dir "$tdir" 2>&1 | grep -v '^ *Compiling' >&2
fi
echo "build: $(( $(date +%s) - build_start )) s" >&2
[ "$build_only" = 1 ] && exit 0

run_one() {
  local t="$1"
  local corpus="$work/corpus/$t" art="$work/artifacts/$t/" log="$work/logs/$t.log"
  mkdir -p "$corpus" "$art" "$work/logs"
  local dict=()
  [ -e "dict/$t.dict" ] && dict=("-dict=$here/dict/$t.dict")
  local seeds=()
  [ -d "corpus/$t" ] && seeds=("$here/corpus/$t")
  # The first corpus directory gets the new inputs; the committed seeds are only read.
  nice -n 19 "$bindir/$t" "$corpus" "${seeds[@]}" "${dict[@]}" \
    -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$budget" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -artifact_prefix="$art" -print_final_stats=1 >"$log" 2>&1 || true
}

# Runs the targets, at most $jobs at a time.
pids=()
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  echo "fuzz $t for ${budget}s (log: $work/logs/$t.log)" >&2
  run_one "$t" &
  pids+=($!)
done
wait

status=0
printf '%-12s %10s %8s %8s %8s %10s\n' target execs cov ft corpus artifacts
for t in "${targets[@]}"; do
  log="$work/logs/$t.log"
  # fork mode's status lines: "#EXECS: cov: N ft: N corp: N exec/s: N ..."
  last="$(grep -E '^#[0-9]+: cov: ' "$log" | tail -1 || true)"
  execs="$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")"
  cov="$(sed -E 's/.* cov: ([0-9]+).*/\1/' <<<"$last")"
  ft="$(sed -E 's/.* ft: ([0-9]+).*/\1/' <<<"$last")"
  corp="$(find "$work/corpus/$t" -type f | wc -l)"
  arts="$(find "$work/artifacts/$t" -type f | wc -l)"
  [ "$arts" -gt 0 ] && status=1
  [ -z "$last" ] && { status=1; execs="?"; cov="?"; ft="?"; }
  printf '%-12s %10s %8s %8s %8s %10s\n' "$t" "$execs" "$cov" "$ft" "$corp" "$arts"
done
[ $status -eq 0 ] || echo "artifacts (or a target that did not run) under $work: see the logs" >&2
exit $status
