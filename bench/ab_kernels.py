#!/usr/bin/env python3
"""Two builds of one kernel benchmark program, side by side in one run (bench/README.md).

Runs OLD and NEW alternately, ROUNDS times each (old, new, old, new, ...), so that both see the
same machine: on a shared machine the speed of one layer moves by tens of percent from one minute
to the next, and two runs an hour apart say little about a 10 % change. Prints, per benchmark,
the median wall time of each build and their ratio (old / new: above 1 means NEW is faster), and
the sums per kernel and configuration.

usage: ab_kernels.py OLD_PROGRAM NEW_PROGRAM [--rounds 3] -- [benchmark flags...]

e.g.  bench/ab_kernels.py /tmp/old/build/bench/bench_kernels_misc build/bench/bench_kernels_misc \\
          --rounds 3 -- --benchmark_filter='bn_(fwd_train|bwd)/' --sizes=64 --batches=32 --threads=1,2
"""
import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict


def run(program, flags):
    """name -> wall microseconds per iteration, from one run of a Google Benchmark program."""
    out = subprocess.run([program, "--benchmark_format=json", "--benchmark_min_time=0.1", *flags],
                         check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        times[b["name"].replace("/real_time", "")] = b["real_time"] * unit
    return times


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        i = argv.index("--")
        argv, flags = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    samples = defaultdict(lambda: {"old": [], "new": []})
    for r in range(args.rounds):
        for which, program in (("old", args.old), ("new", args.new)):
            for name, t in run(program, flags).items():
                samples[name][which].append(t)
            print(f"# round {r + 1}: {which} done", file=sys.stderr)
    sums = defaultdict(lambda: [0.0, 0.0])
    print(f"{'benchmark':90s} {'old us':>9s} {'new us':>9s} {'old/new':>8s}")
    for name, s in samples.items():
        if len(s["old"]) != args.rounds or len(s["new"]) != args.rounds:
            print(f"{name[:90]:90s} (not in every run of both programs: skipped)")
            continue
        o, n = statistics.median(s["old"]), statistics.median(s["new"])
        print(f"{name[:90]:90s} {o:9.1f} {n:9.1f} {o / n:8.2f}")
        parts = name.split("/")
        key = "/".join(parts[:4]) if len(parts) >= 4 else parts[0]  # kernel/size/batch/threads
        sums[key][0] += o
        sums[key][1] += n
    print()
    for key, (o, n) in sums.items():
        print(f"sum {key:40s} old {o / 1e3:8.3f} ms  new {n / 1e3:8.3f} ms  old/new {o / n:5.2f}")


if __name__ == "__main__":
    main()
