#!/usr/bin/env python3
"""bench/perf_breakdown.py: where a sleepnet process spends its time, from a `perf record -g` file.

Reads `perf script` output (call chains, frame pointers) and attributes every sample twice:

  phase   from the sample's time and the phase spans that `e2e_main --trace FILE` wrote: forward
          (zero_grad, train-mode forward, MSE), backward, adam, inference; anything else is setup
          (model construction, random data, the loss check's printing, exit). Time, not the stack,
          so samples on OpenMP worker threads and inside OpenBLAS (no frame pointers) count too.
  bucket  from the leaf and the nearest kernel frame: a kernel of nn/kernels/ (public name, e.g.
          depthwise_backward_weight), sgemm inside a named kernel, or one of the non-kernel
          overheads: OpenMP runtime (libgomp: barrier spin, fork/join), page faults (first touch of
          freshly mapped memory), other kernel time, malloc/free, memset, memcpy, autograd and
          tensor bookkeeping (everything else in sleepnet outside nn/kernels/)

Usage (the program should be built with -fno-omit-frame-pointer; see bench/README.md):

  perf record -F 997 -g -k CLOCK_MONOTONIC -o a.data -- \
      build-prof/bench/e2e_main --config a --threads 2 --only train --trace a.trace
  bench/perf_breakdown.py a.data a.trace [--top 25] [--steps-only]

Percentages are shares of the CPU time sampled (all threads), so on two threads OpenMP spin-waiting
shows up as CPU time of the OpenMP runtime.
"""
import argparse
import bisect
import os
import collections
import re
import subprocess
import sys

PERF = "/usr/bin/perf"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# public kernel entry points, and their OpenMP-outlined / cloned bodies
KERNEL_RE = re.compile(r"^sleepnet::kernels::([a-z0-9_]+)(?:\s*\[clone [^\]]*\])?$")
HELPER_RE = re.compile(r"^sleepnet::kernels::\(anonymous namespace\)::([A-Za-z0-9_]+)")
PAGE_FAULT = re.compile(r"exc_page_fault|do_anonymous_page|clear_page")
MALLOC = re.compile(r"malloc|free|_int_|aligned_alloc|memalign|operator new|operator delete|tcache|sysmalloc|"
                    r"systrim|munmap|mmap|brk")


def samples(path):
    """Yields (tid, time, period, frames) with frames = [(sym, dso)] leaf first. With the default
    event (cpu-clock) the period is the sample's CPU time in ns."""
    p = subprocess.run([PERF, "script", "-i", path, "-F", "tid,time,period,ip,sym,dso"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, errors="replace")
    tid, t, period, frames = None, 0.0, 0, []
    for line in p.stdout.splitlines():
        if not line.strip():
            if tid is not None:
                yield tid, t, period, frames
            tid, frames = None, []
        elif not line.startswith("\t"):  # a sample's header: "<tid> <time>:"; its frames follow, indented by a tab
            head = line.split()
            tid, t, period, frames = head[0], float(head[1].rstrip(":")), int(head[2]), []
        else:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
            if m:
                sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
                frames.append((sym, m.group(2).rsplit("/", 1)[-1]))
    if tid is not None:
        yield tid, t, period, frames


def helper_files():
    """name -> nn/kernels/<file>.cpp for every identifier defined in those files: a sample in a
    file-local helper whose callers perf could not unwind still names its kernel file."""
    where = {}
    kdir = os.path.join(ROOT, "nn", "kernels")
    for fn in sorted(os.listdir(kdir)):
        if fn.endswith(".cpp"):
            with open(os.path.join(kdir, fn)) as f:
                for name in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:<[^;{()]*>)?\s*\(", f.read()):
                    where.setdefault(name, fn)
    return where


HELPERS = helper_files()


def nearest_kernel(frames):
    """The public nn/kernels entry point nearest the leaf; else the kernel file of the helper."""
    helper = None
    for sym, _ in frames:
        m = KERNEL_RE.match(sym)
        if m and m.group(1) not in ("sgemm", "scratch"):
            return m.group(1)
        h = HELPER_RE.match(sym)
        if h and helper is None:
            helper = f"{HELPERS.get(h.group(1), '?')} (helper {h.group(1)})"
    return helper


def classify(frames):
    leaf, dso = frames[0] if frames else ("?", "?")
    kernel = nearest_kernel(frames)
    where = f" in {kernel}" if kernel else ""
    if "libgomp" in dso:
        return "OpenMP runtime (libgomp)"
    if dso == "[kernel.kallsyms]":
        if any(PAGE_FAULT.search(s) for s, _ in frames):
            return "page faults (first touch of new memory)"
        return "kernel: other (syscalls, scheduler, munmap)"
    if "openblas" in dso:
        return f"sgemm (OpenBLAS){where}"
    if dso.startswith("libc.so") or dso.startswith("libstdc++"):
        if "memset" in leaf:
            return f"memset{where}"
        if "memmove" in leaf or "memcpy" in leaf:
            return f"memcpy{where}"
        if MALLOC.search(leaf):
            return "malloc/free"
        return f"libc/libstdc++ other ({leaf})"
    if dso.startswith("libm.so"):
        return "libm (setup: random init)" if kernel is None else f"libm in {kernel}"
    if kernel:
        return f"kernel {kernel}"
    if leaf.startswith("sleepnet::raw::"):
        return "tensor/ops.cpp element-wise (residual adds, gradient sums, MSE)"
    if leaf.startswith("sleepnet::Tensor::") or leaf.startswith("sleepnet::Storage"):
        return "Tensor methods (creation, fill, copy, views)"
    if leaf.startswith("sleepnet::") or leaf.startswith("std::") or leaf.endswith("@plt"):
        return "autograd engine, nn modules, std:: bookkeeping"
    return f"other ({leaf} in {dso})"


def group_of(bucket):
    """The coarse line of the ranking: the kernel's source file, or the overhead itself."""
    if bucket.startswith("sgemm"):
        return "GEMM: OpenBLAS sgemm (1x1 and stem convolutions, linear)"
    m = re.match(r"kernel (\S+)", bucket)
    if m:
        name = m.group(1)
        return "nn/kernels/" + (name if name.endswith(".cpp") else HELPERS.get(name, name))
    m = re.match(r"(memset|memcpy) in (\S+)", bucket)
    if m:
        return f"{m.group(1)} (inside nn/kernels)"
    return bucket


def read_trace(path):
    """[(start, end, phase)] sorted, from e2e_main --trace."""
    spans = []
    with open(path) as f:
        for line in f:
            phase, t0, t1 = line.split()
            spans.append((float(t0), float(t1), phase))
    return sorted(spans)


def phase_of(t, spans, starts):
    i = bisect.bisect_right(starts, t) - 1
    if i >= 0 and spans[i][0] <= t <= spans[i][1]:
        return spans[i][2]
    return "outside the steps (setup, check output, exit)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="perf.data written by perf record -g -k CLOCK_MONOTONIC")
    ap.add_argument("trace", help="the phase file written by e2e_main --trace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--steps-only", action="store_true", help="leave out samples outside the traced steps")
    args = ap.parse_args()

    all_samples = list(samples(args.data))
    if not all_samples:
        sys.exit(f"perf_breakdown.py: no samples in {args.data}")
    spans = read_trace(args.trace)
    starts = [s[0] for s in spans]
    # Counters below hold CPU ns (the samples' periods), so percentages are shares of CPU time.
    by_phase, by_bucket, by_phase_bucket = collections.Counter(), collections.Counter(), collections.Counter()
    by_thread, by_group = collections.Counter(), collections.Counter()
    for tid, t, period, frames in all_samples:
        ph = phase_of(t, spans, starts)
        if args.steps_only and ph.startswith("outside"):
            continue
        by_thread[tid] += period
        b = classify(frames)
        by_phase[ph] += period
        by_bucket[b] += period
        by_group[group_of(b)] += period
        by_phase_bucket[(ph, b)] += period
    total = sum(by_phase.values())
    if not total:
        sys.exit(f"perf_breakdown.py: no samples to count in {args.data}")
    # CPU ms per step: a training step is one forward + backward + adam span, an inference one span.
    n_spans = collections.Counter(ph for _, _, ph in spans)
    n_steps = max(n_spans.get("forward", 0), n_spans.get("inference", 0)) or 1
    print(f"{args.data}: {len(all_samples)} samples, {total / 1e6:.0f} ms of CPU"
          + (" within the traced steps" if args.steps_only else "") + f" ({n_steps} steps"
          + (f", {total / 1e6 / n_steps:.1f} ms per step" if args.steps_only else "") + "); per thread: "
          + ", ".join(f"{100 * n / total:.1f}%" for _, n in by_thread.most_common()))
    print("\nby phase (% of CPU time, CPU ms per step):")
    for ph, n in by_phase.most_common():
        per = f"{n / 1e6 / n_spans[ph]:8.1f} ms" if n_spans.get(ph) else " " * 11
        print(f"  {100 * n / total:6.2f}% {per}  {ph}")
    def line(n, name, indent="  "):
        print(f"{indent}{100 * n / total:6.2f}% {n / 1e6 / n_steps:8.2f} ms  {name}")

    print("\nby kernel file / overhead (% of CPU time, CPU ms per step):")
    for g, n in by_group.most_common():
        if 100 * n / total >= 0.1:
            line(n, g)
    print(f"\nby kernel / overhead (top {args.top}):")
    for b, n in by_bucket.most_common(args.top):
        line(n, b)
    rest = total - sum(n for _, n in by_bucket.most_common(args.top))
    if rest:
        line(rest, "(the rest)")
    print("\nby phase, top 8 each:")
    for ph, n in by_phase.most_common():
        print(f"  {ph} ({100 * n / total:.1f}%):")
        items = sorted(((c, b) for (p, b), c in by_phase_bucket.items() if p == ph), reverse=True)[:8]
        for c, b in items:
            line(c, b, "    ")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # piped into head
        sys.exit(0)
