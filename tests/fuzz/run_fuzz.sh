#!/usr/bin/env bash
# run_fuzz.sh: builds the libFuzzer targets of the file-format parsers with clang and runs each for a
# bounded time, seeded with the real PhysioNet files shipped in data/physionet and the test inputs.
#
#   tests/fuzz/run_fuzz.sh [seconds-per-target] [target...]
#
#   seconds-per-target  default 60
#   target              any of: wfdb_header wfdb_annotation edf ucddb_text (default: all)
#
# Environment: FUZZ_DIR (build and corpus directory, default <repo>/build-fuzz), CLANGXX (default
# clang++). Targets run one after another (the machine's cores are shared).
#
# The targets are built here, not by CMake: the main build must not need clang. Each target
# compiles its parser's sources directly (-fsanitize=fuzzer,address,undefined). Findings
# (crash-*, leak-*, timeout-*, oom-*) are written to $FUZZ_DIR/findings/<target>/; the script exits
# non-zero if any target fails. Re-run one finding with: $FUZZ_DIR/fuzz_<target> <file>
set -euo pipefail

SECS="${1:-60}"
shift || true
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FUZZ_DIR="${FUZZ_DIR:-$ROOT/build-fuzz}"
CLANGXX="${CLANGXX:-clang++}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(wfdb_header wfdb_annotation edf ucddb_text); fi

command -v "$CLANGXX" >/dev/null || { echo "run_fuzz.sh: $CLANGXX not found (libFuzzer needs clang)" >&2; exit 2; }
mkdir -p "$FUZZ_DIR"

# Sources each target compiles (besides its own fuzz_<target>.cpp).
sources_of() {
  case "$1" in
    wfdb_header) echo "data/reader_util.cpp data/wfdb_header.cpp" ;;
    wfdb_annotation) echo "data/reader_util.cpp data/wfdb_annotation.cpp" ;;
    edf) echo "data/reader_util.cpp data/edf.cpp" ;;
    ucddb_text) echo "data/reader_util.cpp data/ucddb_text.cpp" ;;
    *) echo "run_fuzz.sh: unknown target '$1'" >&2; exit 2 ;;
  esac
}

# Seed files for each target (copied into a seed directory the fuzzer only reads).
seeds_of() {
  local d="$ROOT/data/physionet"
  case "$1" in
    wfdb_header) ls "$d"/apnea-ecg/*.hea "$d"/slpdb/*.hea ;;
    wfdb_annotation)
      # (beat files are 10-80 kB: their first 4 kB are added as seeds by run(), see head_seeds_of)
      ls "$d"/apnea-ecg/a0[1-4].apn "$d"/apnea-ecg/c07.apn "$d"/slpdb/*.st \
         "$ROOT"/tests/data/bad/*.st "$ROOT"/tests/data/bad/*.apn "$ROOT"/tests/data/bad/*.qrs "$ROOT"/tests/data/bad/*.ann ;;
    edf) ls "$ROOT"/tests/data/edf/*.edf "$ROOT"/tests/data/bad/*.edf ;;
    ucddb_text)
      ls "$d"/ucddb/ucddb002_stage.txt "$d"/ucddb/ucddb008_stage.txt "$d"/ucddb/SubjectDetails.csv \
         "$ROOT"/tests/fuzz/seeds/*.txt ;;
  esac
}

# Large files whose first 4096 bytes make good seeds (small inputs fuzz faster).
head_seeds_of() {
  local d="$ROOT/data/physionet"
  case "$1" in
    wfdb_annotation) ls "$d"/slpdb/slp02b.ecg "$d"/slpdb/slp61.ecg "$d"/apnea-ecg/c01.qrs "$d"/apnea-ecg/a02.qrs ;;
  esac
}

# Longest input each target generates.
max_len_of() {
  case "$1" in
    wfdb_header) echo 8192 ;;
    wfdb_annotation) echo 16384 ;;
    edf) echo 65536 ;;
    ucddb_text) echo 16384 ;;
  esac
}

build() {
  local t="$1" bin="$FUZZ_DIR/fuzz_$1"
  local srcs=("$ROOT/tests/fuzz/fuzz_$t.cpp")
  for s in $(sources_of "$t"); do srcs+=("$ROOT/$s"); done
  echo "== building fuzz_$t"
  "$CLANGXX" -std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$ROOT" "${srcs[@]}" -o "$bin"
}

run() {
  local t="$1" bin="$FUZZ_DIR/fuzz_$1"
  local corpus="$FUZZ_DIR/corpus/$t" seeds="$FUZZ_DIR/seeds/$t" findings="$FUZZ_DIR/findings/$t"
  rm -rf "$seeds"  # rebuilt from the repository files on every run
  mkdir -p "$corpus" "$seeds" "$findings"
  for f in $(seeds_of "$t"); do cp -f "$f" "$seeds/"; done
  for f in $(head_seeds_of "$t"); do head -c 4096 "$f" >"$seeds/head_$(basename "$f")"; done
  echo "== running fuzz_$t for ${SECS}s ($(ls "$seeds" | wc -l) seeds, corpus $(ls "$corpus" | wc -l) files)"
  # -timeout: one input taking > 10 s is a hang; -rss_limit_mb bounds memory (an absurd length
  # must not allocate).
  ( cd "$findings" && "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len_of "$t")" \
      -print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "$seeds" ) >"$FUZZ_DIR/fuzz_$t.log" 2>&1
  local rc=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)" "$FUZZ_DIR/fuzz_$t.log" || true
  grep -E "cov: [0-9]+" "$FUZZ_DIR/fuzz_$t.log" | tail -1 || true
  return $rc
}

for t in "${TARGETS[@]}"; do build "$t"; done
failed=()
for t in "${TARGETS[@]}"; do
  if ! run "$t"; then
    echo "!! fuzz_$t FAILED: see $FUZZ_DIR/fuzz_$t.log and $FUZZ_DIR/findings/$t/" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run_fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "run_fuzz.sh: all targets ran ${SECS}s without findings"
