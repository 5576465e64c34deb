#!/usr/bin/env bash
# tests/cli/main_job.sh SLEEPNET WORK_DIR
#
# The README's main job through the command line, on a small configuration (six records, one
# epoch, width 0.35, 32x32 images): it prints the summary table and the report's path, leaves a
# finished run directory that `predict --run` takes, replaces its own earlier output when run
# again, and never writes into a directory that is not one of its runs.
set -euo pipefail
app=$(readlink -f "$1")
work=$2
data=${SLEEPNET_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/data/physionet/apnea-ecg
rm -rf "$work" && mkdir -p "$work"
export SLEEPNET_CACHE="$work/cache"
flags=(--apnea-data "$data" --records a01 a02 b01 b02 c01 c02 --no-sleep-model --epochs 1 --patience 0
       --width 0.35 --image-size 32 --threads 1 --seed 3 --folds 3 --fold 1)

fail() { echo "FAIL: $*" >&2; exit 1; }

"$app" main --out "$work/main" "${flags[@]}" > "$work/main1.txt" 2> "$work/main1.log" ||
  fail "main: $(tail -3 "$work/main1.log")"
grep -q "minute\|window" "$work/main1.txt" || fail "main printed no summary table: $(head -5 "$work/main1.txt")"
grep -q "^report: .*/report/index.html$" "$work/main1.txt" || fail "main printed no report path"
[ -s "$work/main/report/index.html" ] && [ -s "$work/main/report/metrics.json" ] || fail "no report written"
grep -q '"status": "finished"' "$work/main/run.json" || fail "run.json is not marked finished: $(cat "$work/main/run.json" | head -5)"

# The main job's run predicts records it never saw (the held-out fold's, and one outside the six).
"$app" predict --run "$work/main" --out "$work/pred" "$data/a03" "$data/c03" > "$work/pred.txt" 2>&1 ||
  fail "predict --run on the main job's run: $(tail -3 "$work/pred.txt")"
head -1 "$work/pred/records.csv" | grep -qx "record,hours,apnea_windows,estimated_ahi,severity" || fail "records.csv header"
[ "$(grep -c . "$work/pred/records.csv")" -eq 3 ] || fail "records.csv: expected 2 records"
head -1 "$work/pred/windows.csv" | grep -qx "record,start_s,duration_s,p_apnea,apnea" || fail "windows.csv header"

# Run again: its own earlier output is replaced, with the same figures (same seed, one thread).
"$app" main --out "$work/main" "${flags[@]}" > "$work/main2.txt" 2> "$work/main2.log" ||
  fail "main, second run: $(tail -3 "$work/main2.log")"
cmp -s <(grep -v "^report:\|main job:" "$work/main1.txt") <(grep -v "^report:\|main job:" "$work/main2.txt") ||
  fail "the second run's summary differs: $(diff "$work/main1.txt" "$work/main2.txt" | head -6)"

# The sleep model holds no nights out by default (--sleep-validation-fraction 0: its 8 epochs on
# every training night); asked for a share, it validates on it; the apnea model keeps its own.
sleep_data=$(dirname "$data")/slpdb
sflags=(--apnea-data "$data" --sleep-data "$sleep_data" --records a01 b01 c01 --validation-fraction 0.34
        --sleep-records slp01a slp01b slp02a slp02b slp03 --epochs 1 --sleep-epochs 1 --width 0.35
        --image-size 32 --threads 1 --seed 3)
"$app" train --out "$work/sv0" "${sflags[@]}" > "$work/sv0.txt" 2>&1 || fail "train with a sleep model: $(tail -3 "$work/sv0.txt")"
grep -Eq "^sleep( member [0-9]+)? model: .* training windows from 5 records, 0 validation windows from 0 records$" "$work/sv0.txt" ||
  fail "the sleep model held nights out by default: $(grep "model:" "$work/sv0.txt")"
grep -q "^apnea model: .* from 2 records, .* validation windows from 1 records$" "$work/sv0.txt" ||
  fail "the apnea model lost its validation record: $(grep "model:" "$work/sv0.txt")"
grep -q '"sleep_validation_fraction": 0.0' "$work/sv0/run.json" || fail "run.json lacks sleep_validation_fraction"
"$app" train --out "$work/sv1" "${sflags[@]}" --sleep-validation-fraction 0.34 > "$work/sv1.txt" 2>&1 ||
  fail "train --sleep-validation-fraction 0.34: $(tail -3 "$work/sv1.txt")"
grep -E "^sleep( member [0-9]+)? model: " "$work/sv1.txt" | grep -qv ", 0 validation windows from 0 records$" ||
  fail "--sleep-validation-fraction 0.34 held no night out: $(grep "model:" "$work/sv1.txt")"
if "$app" train --out "$work/sv2" "${sflags[@]}" --sleep-validation-fraction 1.5 > "$work/sv2.txt" 2>&1; then
  fail "--sleep-validation-fraction 1.5 was accepted"
fi

# --apnea-sleep-nights: the apnea model trains on the 3 apnea records and the 5 sleep nights (8
# records between its training and validation sets); without sleep data it is refused.
"$app" train --out "$work/asn" "${sflags[@]}" --apnea-sleep-nights > "$work/asn.txt" 2>&1 ||
  fail "train --apnea-sleep-nights: $(tail -3 "$work/asn.txt")"
n=$(sed -n 's/^apnea model: .* from \([0-9]*\) records, .* from \([0-9]*\) records$/\1 + \2/p' "$work/asn.txt")
[ -n "$n" ] && [ $((n)) -eq 8 ] || fail "--apnea-sleep-nights: the apnea model did not train on 3 + 5 records: $(grep "model:" "$work/asn.txt")"
grep -q '"apnea_sleep_nights": true' "$work/asn/run.json" || fail "run.json lacks apnea_sleep_nights"
if "$app" train --out "$work/asn2" "${sflags[@]}" --apnea-sleep-nights --no-sleep-model > "$work/asn2.txt" 2>&1; then
  fail "--apnea-sleep-nights without sleep data was accepted"
fi
grep -q "apnea-sleep-nights.*needs the sleep data" "$work/asn2.txt" || fail "no clear refusal: $(tail -2 "$work/asn2.txt")"

# --sleep-members 2: two sleep networks beside one apnea network, saved and loaded back by predict;
# with --sleep-width 0.25 they are narrower than the apnea network (predict must build each model at
# its own width to load its weights).
"$app" train --out "$work/sm2" "${sflags[@]}" --sleep-members 2 --sleep-width 0.25 > "$work/sm2.txt" 2>&1 ||
  fail "train --sleep-members 2: $(tail -3 "$work/sm2.txt")"
grep -q '"width_mult": 0.25' "$work/sm2/run.json" || fail "run.json lacks the sleep model's width 0.25"
[ -e "$work/sm2/apnea/best.safetensors" ] && [ -e "$work/sm2/sleep/member1/best.safetensors" ] &&
  [ -e "$work/sm2/sleep/member2/best.safetensors" ] && [ ! -e "$work/sm2/sleep/member3" ] ||
  fail "--sleep-members 2: expected one apnea network and two sleep networks: $(cd "$work/sm2" && find . -name best.safetensors)"
"$app" predict --run "$work/sm2" --out "$work/sm2-pred" "$data/a02" > "$work/sm2-pred.txt" 2>&1 ||
  fail "predict with two sleep networks: $(tail -3 "$work/sm2-pred.txt")"
head -1 "$work/sm2-pred/windows.csv" | grep -qx "record,start_s,duration_s,p_apnea,apnea,p_sleep,sleep" ||
  fail "predict with two sleep networks: no sleep columns"

# A directory that is not a run is never written into.
mkdir -p "$work/mine" && echo "my notes" > "$work/mine/notes.txt"
if "$app" main --out "$work/mine" "${flags[@]}" > "$work/mine.txt" 2>&1; then fail "main wrote into a foreign directory"; fi
grep -q "not a sleepnet run directory" "$work/mine.txt" || fail "no clear refusal: $(tail -2 "$work/mine.txt")"
[ "$(cat "$work/mine/notes.txt")" = "my notes" ] || fail "the foreign directory was changed"
echo "PASS: main job prints its summary, leaves a finished run that predicts, reruns identically, refuses foreign directories"
