#!/usr/bin/env bash
# tests/cli/kill_and_resume.sh SLEEPNET WORK_DIR
#
# Issue 5's promise, checked through the command line: `sleepnet train` killed with SIGKILL at any
# moment (here: at several moments spread over the run, image building and checkpoint writes
# included) and continued with `--resume` ends with exactly what an uninterrupted run with the same
# seed and threads ends with: the same best and last checkpoints (byte for byte), the same
# calibration and the same evaluation metrics, for both models (the sleep model, trained without
# validation nights by default, is killed once mid-training on purpose). A small configuration
# (four apnea records, three sleep records, width 0.35, 32x32 images) keeps it to seconds.
set -euo pipefail
app=$(readlink -f "$1")
work=$2
data=${SLEEPNET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/data/physionet/apnea-ecg
rm -rf "$work" && mkdir -p "$work"
# Both models: the apnea model early-stops on a validation record, the sleep model (by default)
# holds no night out.
flags=(--apnea-data "$data" --records a01 b01 c01 a02 --epochs 3 --patience 0
       --sleep-data "$(dirname "$data")/slpdb" --sleep-records slp01a slp02a slp03 --sleep-epochs 3
       --width 0.35 --image-size 32 --batch-size 64 --threads 1 --seed 11 --validation-fraction 0.25)

fail() { echo "FAIL: $*" >&2; exit 1; }

# The uninterrupted run, timed so that the kills below land at known fractions of a run.
t0=$(date +%s%N)
SLEEPNET_CACHE="$work/cache-a" "$app" train --out "$work/a" "${flags[@]}" 2> "$work/a.log" || fail "run a: $(tail -3 "$work/a.log")"
total_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "uninterrupted run: ${total_ms} ms"

# The interrupted run: killed (SIGKILL, no chance to clean up) at 10 %, 35 % and 30 % of the
# uninterrupted run's time after each start or resume, then resumed until it finishes.
attempt=0
for pct in 10 35 30; do
  grep -q '"finished"' "$work/b/run.json" 2> /dev/null && break
  attempt=$((attempt + 1))
  resume=(); [ -e "$work/b/run.json" ] && resume=(--resume)
  SLEEPNET_CACHE="$work/cache-b" "$app" train --out "$work/b" "${resume[@]}" "${flags[@]}" 2> "$work/b$attempt.log" &
  pid=$!
  sleep "$(awk -v t="$total_ms" -v p="$pct" 'BEGIN { printf "%.3f", t * p / 100 / 1000 }')"
  if kill -KILL "$pid" 2> /dev/null; then
    wait "$pid" 2> /dev/null || true
    echo "attempt $attempt: killed at ${pct} % ($(grep -c . "$work/b$attempt.log") log lines)"
  else
    wait "$pid" || fail "attempt $attempt ended with an error: $(tail -3 "$work/b$attempt.log")"
    echo "attempt $attempt: finished before the kill"
  fi
done
# Then, until some sleep network stands mid-training (its checkpoint not finished), once more at a
# time, killed as soon as a sleep checkpoint is written (renamed into place whole) after the
# attempt's start, so that the last resume continues the sleep model (or one network of its
# ensemble) from the middle too. The checkpoint, not the progress line: the line comes before the
# checkpoint, and a kill between the two leaves nothing new to resume from.
# A safetensors file: an 8-byte little-endian header length, the JSON header, the tensors.
header_len() { od -An -tu8 -N8 "$1" | tr -d ' '; }
header() { local n; n=$(header_len "$1"); head -c $((8 + n)) "$1" | tail -c "$n"; }
tensors() { local n; n=$(header_len "$1"); tail -c +$((9 + n)) "$1"; }
sleep_mid() {
  local f
  for f in $(find "$work/b/sleep" -name checkpoint.safetensors 2> /dev/null); do
    header "$f" | grep -q '"finished":"0"' && return 0
  done
  return 1
}
for _ in $(seq 12); do
  grep -q '"finished"' "$work/b/run.json" 2> /dev/null && break
  sleep_mid && break
  resume=(); [ -e "$work/b/run.json" ] && resume=(--resume)
  touch "$work/marker" && sleep 0.01
  SLEEPNET_CACHE="$work/cache-b" "$app" train --out "$work/b" "${resume[@]}" "${flags[@]}" 2>> "$work/b-sleep.log" &
  pid=$!
  for _ in $(seq 3000); do  # up to a minute
    [ -n "$(find "$work/b/sleep" -name checkpoint.safetensors -newer "$work/marker" 2> /dev/null)" ] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.02
  done
  kill -KILL "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
done
sleep_mid || fail "no sleep network was left mid-training to resume"
resume=(); [ -e "$work/b/run.json" ] && resume=(--resume)
if ! grep -q '"finished"' "$work/b/run.json" 2> /dev/null; then
  SLEEPNET_CACHE="$work/cache-b" "$app" train --out "$work/b" "${resume[@]}" "${flags[@]}" 2> "$work/b-last.log" ||
    fail "final resume: $(tail -3 "$work/b-last.log")"
fi

# Checkpoints: the tensors (everything after the JSON header) byte for byte; the header's training
# log differs only in the seconds each epoch took, so the logs are compared without that column.
tr '\r' '\n' < <(cat "$work"/b*.log) | grep -h "resuming after" || echo "(no attempt got past its first epoch)"
tr '\r' '\n' < "$work/b-last.log" | grep -Eq "^sleep( member [0-9]+)?: resuming after epoch [12]$" ||
  fail "the last resume did not continue a sleep network from the middle: $(grep -a "resuming" "$work/b-last.log")"

# Every network's files (apnea/, sleep/, or their memberJ/ folders in an ensemble).
ckpts=$(cd "$work/a" && find apnea sleep -name "*.safetensors" | sort)
[ "$(echo "$ckpts" | grep -c '^apnea/')" -ge 2 ] && [ "$(echo "$ckpts" | grep -c '^sleep/')" -ge 2 ] ||
  fail "the uninterrupted run lacks checkpoints: $ckpts"
[ "$ckpts" = "$(cd "$work/b" && find apnea sleep -name "*.safetensors" | sort)" ] || fail "the runs hold other checkpoint files"
for f in $ckpts; do
  cmp -s <(tensors "$work/a/$f") <(tensors "$work/b/$f") || fail "$f: the tensors differ between the uninterrupted and the resumed run"
done
for f in $(cd "$work/a" && find apnea sleep -name log.csv | sort); do
  cmp -s <(cut -d, -f1-6 "$work/a/$f") <(cut -d, -f1-6 "$work/b/$f") || fail "$f differs"
done
cmp -s "$work/a/calibration.json" "$work/b/calibration.json" || fail "calibration.json differs"
for run in a b; do
  "$app" evaluate --run "$work/$run" --data "$data" --records a03 b02 c02 --out "$work/$run-report" > "$work/$run-eval.txt" 2>&1 ||
    fail "evaluate $run: $(tail -3 "$work/$run-eval.txt")"
done
# The reports' titles name their run directories; everything else must be equal.
cmp -s <(grep -v '"title"' "$work/a-report/metrics.json") <(grep -v '"title"' "$work/b-report/metrics.json") ||
  fail "metrics.json differs: $(diff "$work/a-report/metrics.json" "$work/b-report/metrics.json" | head -5)"
echo "PASS: the resumed run's checkpoints, calibration and metrics equal the uninterrupted run's"
