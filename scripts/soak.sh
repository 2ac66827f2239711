#!/usr/bin/env bash
# Soak test (RELIABILITY.md scenario 14): every mix of producer and consumer processes over
# every capacity, random sizes and stalls, counters started near their wrap point; checks
# that nothing is lost, duplicated, reordered or damaged and that memory stays flat.
#
# Usage: scripts/soak.sh [SECONDS]
#   SECONDS (or $SHMKIT_SOAK_SECS): total time for all configurations; default 60.
# The tests are in tests/soak.rs, #[ignore]d in the normal test run.
set -euo pipefail
cd "$(dirname "$0")/.."

export SHMKIT_SOAK_SECS="${1:-${SHMKIT_SOAK_SECS:-60}}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# Segments left by an earlier run must not hide or fake a leak.
before=$(ls /dev/shm | grep -c '^shmkit' || true)

echo "== soak: SHMKIT_SOAK_SECS=$SHMKIT_SOAK_SECS"
cargo test --release --test soak -- --ignored --nocapture --test-threads=1

after=$(ls /dev/shm | grep -c '^shmkit' || true)
if [ "$after" -gt "$before" ]; then
  echo "the soak left segments behind:"
  ls -la /dev/shm | grep shmkit
  exit 1
fi
echo "== soak ok"
