#!/usr/bin/python3
"""bench/compare_pytorch.py: sleepnet against PyTorch, MobileNetV2 end to end, side by side.

For each configuration, runs bench/e2e_main (sleepnet) and bench/torch_e2e.py (PyTorch) alternately,
R rounds, each run a fresh process (so each peak-memory figure belongs to a process that trained
that one configuration only), and swaps which of the two goes first every round so that a change
in the machine's load hits both. Prints the medians over the rounds and then, as its last lines,
one per configuration:

    config=a train_speedup=R infer_speedup=R memory_ratio=R

speedup = sleepnet samples/s / PyTorch samples/s (> 1: sleepnet is faster);
memory_ratio = sleepnet peak RSS / PyTorch peak RSS (< 1: sleepnet uses less).

Configurations (issue 6): a = width 1.0, 1x64x64, batch 32; b = width 1.0, 3x224x224, batch 8;
c = width 0.5, 1x64x64, batch 64; s = width 0.5, 1x32x32, batch 64 (the screening app, not in the
default set).

  /usr/bin/python3 bench/compare_pytorch.py --build build --threads 2
  /usr/bin/python3 bench/compare_pytorch.py --configs a --rounds 5 --steps 10

Needs a build of the e2e_main target (`cmake --build build --target e2e_main`) and, for the
PyTorch side only, Debian's python3-torch and python3-torchvision (--python, default
/usr/bin/python3).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Per configuration: timed steps and loss-check steps by default (b costs ~3x a per step).
DEFAULT_STEPS = {"a": 5, "b": 3, "c": 5, "s": 10}
DEFAULT_CHECK = {"a": 4, "b": 3, "c": 4, "s": 4}
DESCRIPTION = {"a": "w1.0 1x64x64 b32", "b": "w1.0 3x224x224 b8", "c": "w0.5 1x64x64 b64",
               "s": "w0.5 1x32x32 b64"}


def parse_result(out, what):
    """The key=value pairs of the `result ...` line of a run's stdout."""
    for line in out.splitlines():
        if line.startswith("result "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    raise RuntimeError(f"{what}: no 'result' line in its output:\n{out}")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_busy(seconds=1.0):
    """Share of the machine's CPU time that other processes use, measured over `seconds` of
    /proc/stat before a configuration starts (the load average lags by a minute or more)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    try:
        i0, t0 = read()
        time.sleep(seconds)
        i1, t1 = read()
        return 1.0 - (i1 - i0) / max(t1 - t0, 1)
    except OSError:
        return float("nan")


def git_version():
    try:
        return subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run(cmd, what, env=None):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    r = parse_result(p.stdout, what)
    r["wall_s"] = f"{time.time() - t0:.1f}"
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each implementation per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per run (default per configuration: " +
                    ", ".join(f"{k}={v}" for k, v in DEFAULT_STEPS.items()) + ")")
    ap.add_argument("--configs", default="a,b,c", help="comma-separated, from a,b,c,s")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory")
    ap.add_argument("--python", default="/usr/bin/python3", help="interpreter that has torch and torchvision")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the sleepnet runs only (repeatable), e.g. OPENBLAS_CORETYPE=SkylakeX")
    args = ap.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in configs if c not in DEFAULT_STEPS]
    if bad or not configs:
        ap.error(f"--configs: unknown configuration(s) {bad}; expected some of a,b,c,s")
    if args.rounds < 1 or args.threads < 1 or (args.steps is not None and args.steps < 1):
        ap.error("--rounds, --threads and --steps must be >= 1")
    exe = os.path.join(args.build, "bench", "e2e_main")
    if not os.access(exe, os.X_OK):
        ap.error(f"--build: {exe} not found; build it with: cmake --build {args.build} --target e2e_main")
    torch_script = os.path.join(HERE, "torch_e2e.py")
    sleepnet_env = dict(os.environ)
    for kv in args.env:
        if "=" not in kv:
            ap.error(f"--env: expected KEY=VALUE, got {kv!r}")
        k, v = kv.split("=", 1)
        sleepnet_env[k] = v

    print(f"# {cpu_model()}, nproc={os.cpu_count()}; sleepnet {git_version()} ({exe})"
          + (f"; sleepnet env: {' '.join(args.env)}" if args.env else "")
          + (f"; OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} in the environment"
             if "OPENBLAS_CORETYPE" in os.environ else ""))
    print(f"# threads={args.threads} rounds={args.rounds} "
          f"loadavg_at_start={' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results = {}  # config -> impl -> list of result dicts
    for c in configs:
        steps = args.steps or DEFAULT_STEPS[c]
        common = ["--config", c, "--threads", str(args.threads), "--steps", str(steps),
                  "--check-steps", str(DEFAULT_CHECK[c])]
        cmds = {"sleepnet": [exe] + common, "pytorch": [args.python, torch_script] + common}
        results[c] = {"sleepnet": [], "pytorch": []}
        print(f"# config={c}: CPU busy with other work just before: {100 * cpu_busy():.0f}%", flush=True)
        for r in range(args.rounds):
            order = ["sleepnet", "pytorch"] if r % 2 == 0 else ["pytorch", "sleepnet"]
            for impl in order:
                res = run(cmds[impl], f"{impl} config={c} round {r + 1}",
                          sleepnet_env if impl == "sleepnet" else None)
                results[c][impl].append(res)
                print(f"# config={c} round={r + 1} {impl}: train {res['train_samples_per_s']}/s "
                      f"infer {res['infer_samples_per_s']}/s peak {res['peak_rss_mib']} MiB "
                      f"({res['wall_s']} s)"
                      + (f" OpenBLAS {res['blas_core']}" if "blas_core" in res else ""), flush=True)
    print(f"# loadavg_at_end={' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    med = {c: {impl: {} for impl in results[c]} for c in configs}
    keys = ["train_samples_per_s", "infer_samples_per_s", "peak_rss_mib", "base_rss_mib",
            "forward_ms", "backward_ms", "adam_ms", "train_cpu_ms", "infer_step_ms"]
    for c in configs:
        for impl, runs in results[c].items():
            for k in keys:
                med[c][impl][k] = statistics.median(float(run_[k]) for run_ in runs)
            v = [float(run_["train_samples_per_s"]) for run_ in runs]
            med[c][impl]["train_range"] = f"{min(v):.1f}-{max(v):.1f}"

    print()
    print(f"medians over {args.rounds} rounds, {args.threads} threads "
          "(samples/s from each run's median step; memory: peak RSS of the training process, MiB)")
    print("(fwd/bwd/adam: wall ms per phase of a training step; cpu: CPU ms of a step, all threads)")
    head = (f"{'config':<22} {'impl':<9} {'train/s':>8} {'(range)':>13} {'infer/s':>8} {'fwd ms':>7} "
            f"{'bwd ms':>7} {'adam ms':>7} {'cpu ms':>7} {'peak MiB':>9} {'base MiB':>9}")
    print(head)
    print("-" * len(head))
    for c in configs:
        for impl in ("sleepnet", "pytorch"):
            m = med[c][impl]
            print(f"{c + ' ' + DESCRIPTION[c]:<22} {impl:<9} {m['train_samples_per_s']:>8.2f} "
                  f"{m['train_range']:>13} {m['infer_samples_per_s']:>8.2f} {m['forward_ms']:>7.1f} "
                  f"{m['backward_ms']:>7.1f} {m['adam_ms']:>7.1f} {m['train_cpu_ms']:>7.1f} {m['peak_rss_mib']:>9.1f} "
                  f"{m['base_rss_mib']:>9.1f}")
    print()
    for c in configs:
        s, p = med[c]["sleepnet"], med[c]["pytorch"]
        print(f"config={c} train_speedup={s['train_samples_per_s'] / p['train_samples_per_s']:.2f} "
              f"infer_speedup={s['infer_samples_per_s'] / p['infer_samples_per_s']:.2f} "
              f"memory_ratio={s['peak_rss_mib'] / p['peak_rss_mib']:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print(f"compare_pytorch.py: {e}", file=sys.stderr)
        sys.exit(1)
