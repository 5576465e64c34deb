#!/usr/bin/env bash
# tests/cli/corrupt_records.sh SLEEPNET WORK_DIR
#
# Bad input through the command line: a synthetic record (WFDB header, signal, beat, apnea and
# stage annotations, and its EDF copy) is damaged one file at a time in fixed ways (emptied, cut in
# half, cut by one byte, a block overwritten with 0xff in the middle and at the start, garbage
# appended), and `sleepnet info` and `sleepnet predict` are run on it, as a record with its beat
# file and, without it, through the QRS detector. Every run must end within its time limit with
# exit status 0 (the damage did not matter or was skipped with a message) or 1 (a clear error),
# never a crash (nor, in a sanitizer build, a memory error or undefined behaviour); an exit status of
# 1 must come with a message naming the record.
set -euo pipefail
app=$(readlink -f "$1")
work=$2
data=${SLEEPNET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/data/physionet/apnea-ecg
rm -rf "$work" && mkdir -p "$work"
export SLEEPNET_CACHE="$work/cache" OMP_NUM_THREADS=1

fail() { echo "FAIL: $*" >&2; exit 1; }

"$app" synth --out "$work/base" --duration 600 > /dev/null || fail "synth"
# A small trained run for predict (seconds).
"$app" train --out "$work/run" --apnea-data "$data" --records a01 b01 c01 a02 --no-sleep-model --epochs 1 \
  --patience 0 --width 0.35 --image-size 32 --threads 1 --seed 5 --validation-fraction 0.25 > "$work/train.log" 2>&1 ||
  fail "train: $(tail -3 "$work/train.log")"

# damage FILE KIND: one way of breaking a file.
damage() {
  local f=$1 size
  size=$(stat -c %s "$f")
  case $2 in
    empty) : > "$f" ;;
    half) truncate -s $((size / 2)) "$f" ;;
    short) truncate -s $((size > 0 ? size - 1 : 0)) "$f" ;;
    middle) head -c 16 /dev/zero | tr '\0' '\377' | dd of="$f" bs=1 seek=$((size / 3)) conv=notrunc status=none ;;
    start) head -c 24 /dev/zero | tr '\0' '\377' | dd of="$f" bs=1 seek=0 conv=notrunc status=none ;;
    append) printf 'garbage\n\377\376 1 2 3\n' >> "$f" ;;
  esac
}

# run NAME CMD...: the command must end with status 0 or 1 within 120 s; 1 must name the record.
runs=0
run() {
  local name=$1 rc=0
  shift
  timeout 120 "$@" > "$work/out.txt" 2>&1 || rc=$?
  runs=$((runs + 1))
  # Under the sanitizers (CI's Debug build) a memory error exits with status 1 too: look for it.
  if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$work/out.txt"; then
    fail "$name: sanitizer report: $(grep -m1 "ERROR\|runtime error" "$work/out.txt")"
  fi
  case $rc in
    0) ;;
    1) grep -q "synth" "$work/out.txt" || fail "$name: exit status 1 without naming the record: $(tail -2 "$work/out.txt")" ;;
    124) fail "$name: no answer within 120 s (a hang?)" ;;
    *) fail "$name: exit status $rc (a crash?): $(tail -3 "$work/out.txt")" ;;
  esac
}

for file in synth.hea synth.qrs synth.apn synth.st synth.dat synth.edf; do
  for kind in empty half short middle start append; do
    for beats in file detector; do
      rm -rf "$work/c" && cp -r "$work/base" "$work/c"
      [ "$beats" = detector ] && rm -f "$work/c/synth.qrs"
      [ -e "$work/c/$file" ] || continue
      damage "$work/c/$file" "$kind"
      for target in "$work/c/synth" "$work/c/synth.edf"; do
        what="$file $kind (beats from the $beats), $(basename "$target")"
        run "info: $what" "$app" info "$target"
        rm -rf "$work/pred"
        run "predict: $what" "$app" predict --run "$work/run" --out "$work/pred" "$target"
      done
    done
  done
done
echo "PASS: $runs runs on damaged records, every one a result or a clear error"
