#!/usr/bin/env python3
"""Kernel benchmarks as fractions of their yardsticks (bench/README.md, "Kernels").

Reads Google Benchmark JSON files written by bench/bench_kernels_*.cpp
(--benchmark_out=FILE --benchmark_out_format=json) and pairs every kernel with its yardstick:

  conv_<pass>/<cfg>/<layer>          GFLOP/s over the better of sgemm_<pass>/images|blas/<cfg>/<layer>
                                     (the same GEMMs without im2col, bias or reduction)
  dw_*, bn_*, relu6_*, pool_*, adam* GB/s over memcpy/<bytes>B/t<threads> (same bytes, same threads)

and, for families that count flops too (depthwise), GFLOP/s over fma_peak/t<threads> (the cores'
multiply-add peak) together with the GFLOP/s that half the copy rate would take.

With --benchmark_repetitions=K the fastest repetition of each benchmark is used (on a busy
machine it is the least disturbed one). Prints one markdown table per kernel family, then a summary per (family, configuration):
the time-weighted fraction sum(yardstick time) / sum(kernel time) over the family's layers,
which is what matters for a whole network, and the worst single layer.

usage: kernel_table.py RESULT.json [RESULT.json ...] [--details] [--cpu]

--cpu uses the process CPU time instead of wall-clock time. Only meaningful for one-thread runs,
where it removes the time the process waited for a core on a machine shared with other work.
"""
import json
import re
import sys
from collections import defaultdict


TIME_KEY = "real_time"
ERRORS = []


def load(paths):
    """name -> {time: fastest repetition's seconds per iteration, GFLOP/GB: rate at that time}."""
    runs = {}
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                print(f"ERROR {b['name']}: {b.get('error_message', '')}", file=sys.stderr)
                ERRORS.append(b["name"])
                continue
            if b.get("run_type", "iteration") != "iteration":
                continue
            name = re.sub(r"/real_time$", "", b.get("run_name", b["name"]))
            unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
            t = b[TIME_KEY] * unit
            r = {"time": t}
            for key in ("GFLOP", "GB"):
                if b.get(key) is not None:
                    r[key + "_work"] = b[key] * b["real_time"] * unit  # per iteration (rates use real time)
            if name not in runs or t < runs[name]["time"]:
                runs[name] = r
    for r in runs.values():
        for key in ("GFLOP", "GB"):
            r[key] = r[key + "_work"] / r["time"] if key + "_work" in r else None
    return runs


def pair(runs):
    """[(family, config, layer, kernel run, yardstick name, yardstick run, rate key)]"""
    rows = []
    for name, r in runs.items():
        m = re.match(r"conv_(fwd|bwd_data|bwd_weight)/(\d+/b\d+/t\d+)/(.*)$", name)
        if m:
            pas, cfg, layer = m.groups()
            cands = [(f"sgemm_{pas}/{how}/{cfg}/{layer}") for how in ("images", "blas")]
            cands = [(c, runs[c]) for c in cands if c in runs]
            if cands:
                yname, y = max(cands, key=lambda c: c[1]["GFLOP"])
                rows.append((f"conv_{pas}", cfg, layer, r, yname.split("/")[1], y, "GFLOP"))
            continue
        m = re.match(r"((?:dw|bn|relu6|pool)_[a-z0-9_]+|adamw?)/(?:(\d+/b\d+/)?(t\d+))/(.*?)/?bytes:(\d+)$", name)
        if m:
            fam, cfgpre, threads, layer, nbytes = m.groups()
            yname = f"memcpy/{nbytes}B/{threads}"
            if yname in runs:
                cfg = (cfgpre or "") + threads
                rows.append((fam, cfg, layer, r, "memcpy", runs[yname], "GB"))
    return rows


def main(argv):
    global TIME_KEY
    details = "--details" in argv
    if "--cpu" in argv:  # CPU time instead of wall-clock: one-thread runs on a machine others load
        TIME_KEY = "cpu_time"
    paths = [a for a in argv if not a.startswith("--")]
    if not paths:
        print(__doc__)
        return 2
    runs_by_name = load(paths)
    rows = pair(runs_by_name)
    if not rows:
        print("no kernel/yardstick pairs found")
        return 1
    fam_order = ["conv_fwd", "conv_bwd_data", "conv_bwd_weight", "dw_fwd", "dw_bwd_data", "dw_bwd_weight",
                 "bn_fwd_train", "bn_bwd", "bn_fwd_eval", "bn_relu6_eval", "relu6_fwd", "relu6_bwd",
                 "pool_fwd", "pool_bwd", "adam", "adamw"]
    rank = {f: i for i, f in enumerate(fam_order)}
    rows.sort(key=lambda r: (rank.get(r[0], 99), r[1], r[2]))
    if details:
        fam = None
        for f, cfg, layer, k, yname, y, key in rows:
            if f != fam:
                fam = f
                unit = "GFLOP/s" if key == "GFLOP" else "GB/s"
                print(f"\n### {f}\n\n| config | layer | time (us) | {unit} | yardstick {unit} | fraction |")
                print("|---|---|---:|---:|---:|---:|")
            print(f"| {cfg} | {layer} | {k['time'] * 1e6:.1f} | {k[key]:.1f} | {y[key]:.1f} ({yname}) | "
                  f"{k[key] / y[key]:.0%} |")
    groups = defaultdict(list)
    for f, cfg, layer, k, yname, y, key in rows:
        groups[(f, cfg)].append((layer, k, y, key))
    print("\n| kernel | config (size/batch/threads) | layers | kernel time (ms) | yardstick time (ms) "
          "| time-weighted fraction | worst layer |")
    print("|---|---|---:|---:|---:|---:|---|")
    # Beside it, the arithmetic side of the memory-bound families that also count flops (depthwise):
    # the cores' measured multiply-add peak ("fma_peak/t<threads>"), and the GFLOP/s a family would
    # need to reach half the copy rate. Where that exceeds the peak, no kernel can meet the copy
    # target on this machine.
    arith = []
    for (f, cfg) in sorted(groups, key=lambda g: (rank.get(g[0], 99), g[1])):
        items = groups[(f, cfg)]
        # Yardstick time for the same work: kernel time scaled by rate ratio.
        kt = sum(k["time"] for _, k, _, _ in items)
        yt = sum(k["time"] * k[key] / y[key] for _, k, y, key in items)
        worst = min(items, key=lambda i: i[1][i[3]] / i[2][i[3]])
        wf = worst[1][worst[3]] / worst[2][worst[3]]
        print(f"| {f} | {cfg} | {len(items)} | {kt * 1e3:.2f} | {yt * 1e3:.2f} | {yt / kt:.0%} | "
              f"{wf:.0%} {worst[0]} |")
        peak = runs_by_name.get("fma_peak/" + cfg.split("/")[-1])
        if peak is None or peak["GFLOP"] is None or any(k["GFLOP"] is None for _, k, _, _ in items):
            continue
        flops = sum(k["GFLOP_work"] for _, k, _, _ in items)
        need = flops / (2 * yt)  # GFLOP/s at half the copy rate: kernel time = 2 x yardstick time
        arith.append(f"| {f} | {cfg} | {flops / kt:.1f} | {peak['GFLOP']:.1f} | {flops / kt / peak['GFLOP']:.0%} "
                     f"| {need:.1f} | {need / peak['GFLOP']:.0%} |")
    if arith:
        print("\n| kernel | config | GFLOP/s (time-weighted) | FMA peak GFLOP/s | of peak "
              "| GFLOP/s for 50 % of copy | that of peak |")
        print("|---|---|---:|---:|---:|---:|---:|")
        print("\n".join(arith))
    if ERRORS:  # a kernel that disagreed with its _ref (or failed) was not timed
        print(f"{len(ERRORS)} benchmark(s) reported errors (see ERROR lines)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
