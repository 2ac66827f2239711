#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 60), one after the
# other, on stable Rust (no sanitizer: `-s none`). Exits non-zero if any target crashes,
# panics, hangs (libFuzzer's -timeout) or runs out of memory; the failing input is left in
# fuzz/artifacts/<target>/ and printed as hex at the end of that target's log.
#
#   FUZZ_SECONDS=600 bash .ci/fuzz.sh            # all targets, ten minutes each
#   FUZZ_TARGETS="mpmc sync" bash .ci/fuzz.sh    # some of them
#
# New corpus entries go to a scratch directory, never to the committed seeds in
# fuzz/corpus/<target>/ (set FUZZ_CORPUS_OUT=DIR to keep them). Segments the targets leave
# in /dev/shm after a crash (all named shmkit.fz.<pid>.*) are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2 # builds with `cargo install --locked` on Rust 1.95 stable
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cargo fuzz --version

scratch=$(mktemp -d "${TMPDIR:-/tmp}/shmkit-fuzz.XXXXXX")
out=${FUZZ_CORPUS_OUT:-$scratch/corpus}

# Removes what the targets made and did not remove (a crash, a timeout, a kill): files of
# processes that no longer run, so that a concurrent run's live segments are left alone.
sweep() {
  local f pid
  for f in /dev/shm/shmkit.fz.* /dev/shm/shmkit~fz.*; do
    [ -e "$f" ] || continue
    pid=${f#/dev/shm/shmkit?fz.}
    pid=${pid%%.*}
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      rm -f -- "$f"
    fi
  done
}
cleanup() {
  sweep
  rm -rf "$scratch"
}
trap cleanup EXIT

corpus_sum() {
  (cd fuzz && find corpus -type f -exec sha1sum {} + 2>/dev/null | sort | sha1sum)
}
seeds_before=$(corpus_sum)

echo "== build (sanitizer none, debug assertions and overflow checks on)"
(cd fuzz && cargo fuzz build -s none)

targets=${FUZZ_TARGETS:-$(cd fuzz && cargo fuzz list)}
failed=()

# Inputs that once found a bug (fuzz/regressions/<target>/) must pass.
for t in $targets; do
  [ -d "fuzz/regressions/$t" ] || continue
  echo "== replay fuzz/regressions/$t"
  if ! (cd fuzz && cargo fuzz run -s none "$t" regressions/"$t"/* -- -runs=1) >"$scratch/$t.replay" 2>&1; then
    echo "!! $t: a regression input fails again:"
    tail -n 60 "$scratch/$t.replay"
    failed+=("$t-regressions")
  fi
  sweep
done
for t in $targets; do
  echo "== fuzz $t for ${FUZZ_SECONDS}s"
  mkdir -p "$out/$t" "fuzz/corpus/$t"
  args=(-max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
  # Seeds of segment_open are whole segment files (an mpmc queue is ~17 KiB).
  if [ "$t" = segment_open ]; then args+=(-max_len=32768); fi
  log=$scratch/$t.log
  start=$scratch/$t.start
  touch "$start" # only artifacts newer than this are this run's
  sleep 1        # (mtimes may have a one-second resolution)
  set +e
  # The first corpus directory receives new inputs; the committed seeds are only read.
  (cd fuzz && cargo fuzz run -s none "$t" "$out/$t" "corpus/$t" -- "${args[@]}") >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    echo "!! $t failed (exit $rc); the end of its log:"
    tail -n 80 "$log"
    for a in fuzz/artifacts/"$t"/*; do
      if [ ! -f "$a" ] || [ ! "$a" -nt "$start" ]; then continue; fi
      echo "-- $a ($(wc -c <"$a") bytes):"
      od -An -tx1 -v "$a" | head -n 64
    done
    failed+=("$t")
  fi
  sweep
done

# The committed seeds must stay as they are.
if [ "$(corpus_sum)" != "$seeds_before" ]; then
  echo "!! fuzz/corpus changed during the run (new inputs belong in the scratch corpus)"
  failed+=("corpus")
fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "== FAILED: ${failed[*]}"
  exit 1
fi
echo "== fuzz ok: $(echo $targets | wc -w) targets, ${FUZZ_SECONDS}s each"
