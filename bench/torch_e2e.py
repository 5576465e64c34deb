#!/usr/bin/python3
"""bench/torch_e2e.py: the PyTorch twin of bench/e2e_main.cpp (MobileNetV2 end to end).

Same configurations, same sequence of work, same one-line result, so bench/compare_pytorch.py can
divide the two. PyTorch is needed by the comparison only, never by the build or the tests; run it
with Debian's interpreter (/usr/bin/python3, which sees python3-torch and python3-torchvision).

Model: torchvision.models.mobilenet_v2(width_mult, num_classes=1) with its default dropout (0.2);
for one input channel the stem convolution is replaced as in /work/shared/golden/make_golden.py
(Conv2d(1, c0, 3, 2, 1, bias=False), kaiming_normal_ fan_out). CPU, float32, NCHW,
torch.set_num_threads(threads), every other setting left at its default.

Sequence (as in e2e_main.cpp):
  1. model (torch.manual_seed(1)), Adam(lr=1e-3); x ~ N(0, 1) [N, C, H, W], y ~ N(0, 1) [N, 1]
  2. --check-steps training steps on that fixed batch; the last loss must be < 0.8 x the first
     (exit status 1 otherwise)
  3. --warmup untimed training steps; 4. --steps timed training steps
     (zero_grad, train-mode forward, MSE, backward, Adam step)
  5. peak resident memory so far (VmHWM of this process, interpreter and libraries included;
     base_rss_mib is the same figure just before the model is built)
  6. eval mode under torch.no_grad(): --warmup untimed forwards, --steps timed forwards

  /usr/bin/python3 bench/torch_e2e.py --config a --threads 2
"""
import argparse
import statistics
import sys
import time


CONFIGS = {  # name: (width_mult, in_channels, H = W, batch)
    "a": (1.0, 1, 64, 32),
    "b": (1.0, 3, 224, 8),
    "c": (0.5, 1, 64, 64),
    "s": (0.5, 1, 32, 64),  # the screening app
}


def peak_rss_mib():
    """VmHWM of this process in MiB (ru_maxrss if /proc is unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="a", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--check-steps", type=int, default=5)
    args = ap.parse_args()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0 or args.check_steps < 2:
        ap.error("--threads and --steps must be >= 1, --warmup >= 0, --check-steps >= 2")

    import torch
    import torch.nn as nn
    import torchvision
    base_rss = peak_rss_mib()  # interpreter and libraries loaded, no model yet
    width, channels, size, batch = CONFIGS[args.config]
    torch.set_num_threads(args.threads)

    # 1. model, optimizer, one fixed batch
    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v2(width_mult=width, num_classes=1)
    if channels != 3:
        stem = model.features[0][0]
        model.features[0][0] = nn.Conv2d(channels, stem.out_channels, 3, 2, 1, bias=False)
        nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, size, size)  # [N, C, H, W]
    y = torch.randn(batch, 1)                     # [N, 1]
    model.train()

    phase = {}

    def train_step():
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        phase.update(forward=t1 - t0, backward=t2 - t1, adam=t3 - t2)
        return loss.item()

    # 2. the loss must go down on the fixed batch
    losses = [train_step() for _ in range(args.check_steps)]
    print(f"pytorch config={args.config}: loss per step: " + " ".join(f"{v:.4f}" for v in losses),
          file=sys.stderr)
    if not losses[-1] < 0.8 * losses[0]:
        print(f"torch_e2e.py: the loss did not go down ({losses[0]:.4f} -> {losses[-1]:.4f})", file=sys.stderr)
        return 1

    # 3, 4. timed training steps
    for _ in range(args.warmup):
        train_step()
    step, fwd, bwd, adam, step_cpu = [], [], [], [], []
    for _ in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step()
        step.append(time.perf_counter() - t0)
        step_cpu.append(time.process_time() - c0)
        fwd.append(phase["forward"]), bwd.append(phase["backward"]), adam.append(phase["adam"])
    # 5. the training process's peak
    train_rss = peak_rss_mib()

    # 6. inference
    model.eval()
    infer, infer_cpu = [], []
    with torch.no_grad():
        for _ in range(args.warmup):
            model(x)
        for _ in range(args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            model(x)
            infer.append(time.perf_counter() - t0)
            infer_cpu.append(time.process_time() - c0)

    med = statistics.median
    ms = lambda v: 1e3 * v  # noqa: E731
    print(f"result impl=pytorch config={args.config} width={width:.2f} input={channels}x{size}x{size} "
          f"batch={batch} threads={args.threads} steps={args.steps} "
          f"train_samples_per_s={batch / med(step):.2f} infer_samples_per_s={batch / med(infer):.2f} "
          f"train_step_ms={ms(med(step)):.2f} train_mean_ms={ms(statistics.mean(step)):.2f} "
          f"forward_ms={ms(med(fwd)):.2f} backward_ms={ms(med(bwd)):.2f} adam_ms={ms(med(adam)):.2f} "
          f"infer_step_ms={ms(med(infer)):.2f} infer_mean_ms={ms(statistics.mean(infer)):.2f} "
          f"train_cpu_ms={ms(med(step_cpu)):.2f} infer_cpu_ms={ms(med(infer_cpu)):.2f} "
          f"peak_rss_mib={train_rss:.1f} base_rss_mib={base_rss:.1f} "
          f"loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
