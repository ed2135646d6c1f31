#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets, cargo fuzz / libFuzzer) for SECONDS each (default
# 60), starting from the committed seeds in fuzz/corpus/<target> and keeping what it finds in
# .run/fuzz/corpus/<target>. Prints executions per target; a crash fails the run and leaves the
# input in fuzz/artifacts/<target>/ (turn it into a regression test, then delete it).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
scripts/setup.sh --fuzz
nightly=$(cat fuzz/nightly)
cargo +"$nightly" fuzz build -O
mkdir -p .run/fuzz
printf '%-18s %14s %8s %10s\n' target executions seconds corpus
for target in $(cargo +"$nightly" fuzz list); do
  work=.run/fuzz/corpus/$target
  mkdir -p "$work" "fuzz/corpus/$target"
  log=.run/fuzz/$target.log
  if ! cargo +"$nightly" fuzz run -O "$target" "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=16384 -timeout=20 -print_final_stats=1 > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $target FAILED (input in fuzz/artifacts/$target/, log $log)"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(find "$work" -type f | wc -l)
  printf '%-18s %14s %8s %10s\n' "$target" "$runs" "$seconds" "$corpus"
done
