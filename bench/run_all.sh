#!/usr/bin/env bash
# Runs every benchmark program in BUILD_DIR/bench briefly, then prints the kernel tables.
#
#   bash bench/run_all.sh BUILD_DIR            (what `make bench` runs)
#   MIN_TIME=0.2 bash bench/run_all.sh build   (longer, steadier numbers)
#   REPS=3 bash bench/run_all.sh build          (kernels: fastest of 3 repetitions, for busy machines)
#   KERNEL_ARGS="--sizes=64,224 --batches=32,1 --threads=1,2" bash bench/run_all.sh build   (everything)
#
# Kernel programs (bench_kernels_*) run a subset by default so that the whole run takes a few
# minutes on 2 cores: 64x64 at batch 32 and 224x224 at batch 1, with 1 and 2 threads. Each program
# writes BUILD_DIR/bench-results/<program>.json; bench/kernel_table.py turns the kernel ones into
# "fraction of yardstick" tables (bench/README.md explains them). Other bench_* programs run with
# their own defaults and MIN_TIME.
set -euo pipefail
BUILD=${1:-build}
MIN_TIME=${MIN_TIME:-0.02}
REPS=${REPS:-1}
KERNEL_RUNS=${KERNEL_RUNS:-"--sizes=64 --batches=32 --threads=1,2;--sizes=224 --batches=1 --threads=1,2"}
here=$(cd "$(dirname "$0")" && pwd)
out="$BUILD/bench-results"
mkdir -p "$out"
shopt -s nullglob
progs=("$BUILD"/bench/bench_*)
if [ ${#progs[@]} -eq 0 ]; then
  echo "run_all.sh: no benchmark programs in $BUILD/bench (build first: cmake --build $BUILD)" >&2
  exit 1
fi
start=$(date +%s)
kernel_json=()
failed=()
for prog in "${progs[@]}"; do
  [ -x "$prog" ] && [ -f "$prog" ] || continue
  name=$(basename "$prog")
  if [[ $name == bench_kernels_* ]]; then
    if [ -n "${KERNEL_ARGS:-}" ]; then runs=("$KERNEL_ARGS"); else IFS=';' read -r -a runs <<< "$KERNEL_RUNS"; fi
    i=0
    for args in "${runs[@]}"; do
      json="$out/$name.$i.json"
      echo "=== $name $args"
      # shellcheck disable=SC2086
      if "$prog" $args --benchmark_min_time="$MIN_TIME" --benchmark_repetitions="$REPS" \
        --benchmark_out="$json" --benchmark_out_format=json; then
        kernel_json+=("$json")
      else
        failed+=("$name $args")
      fi
      i=$((i + 1))
    done
  else
    echo "=== $name"
    "$prog" --benchmark_min_time="$MIN_TIME" --benchmark_out="$out/$name.json" --benchmark_out_format=json ||
      failed+=("$name")
  fi
done
if [ ${#kernel_json[@]} -gt 0 ]; then
  echo "=== kernels as fractions of their yardsticks (sgemm on the same GEMMs; memcpy of the same bytes)"
  python3 "$here/kernel_table.py" "${kernel_json[@]}" || failed+=("kernel_table.py: errors above")
fi
echo "run_all.sh: $(( $(date +%s) - start )) s, results in $out"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'run_all.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
