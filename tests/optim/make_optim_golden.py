"""PyTorch reference numbers for sleepnet's optimizers, schedules and gradient clipping.

Run with a Python that has torch (Debian: python3-torch); the output is committed, so neither the
build nor the tests need torch:
    /usr/bin/python3 tests/optim/make_optim_golden.py tests/data/optim/optim_golden.json

What the JSON file holds (every float32 number is written exactly, as the double it equals):
  params:      name -> {"shape": [...], "init": [...]}   a few float32 parameters, one 0-dim
  grads:       one entry per step: name -> flat gradient, or null for "no gradient this step"
               (the parameter is then skipped by the optimizer, state not advanced)
  optimizers:  each case: "config" (as sleepnet's make_optimizer reads it), optionally "lrs" (the lr
               set before each step, from a PyTorch scheduler), "params_after" (one entry per step:
               name -> flat values after that step), "schedule" (when "lrs" is there: sleepnet's
               settings for the same schedule) and "state" (after the last step:
               "<name>.step", "<name>.exp_avg", "<name>.exp_avg_sq", "<name>.momentum_buffer", flat)
  schedules:   each case: PyTorch scheduler, its settings, and "lrs": the lr at t = 0, 1, ..., n
  clip:        each case: "max_norm", "grads" (step 0's gradients, before), "total_norm",
               "clipped" (name -> flat gradient after clip_grad_norm_)
All computations run in float32 on the CPU with foreach=False (PyTorch's single-tensor path, which
sleepnet follows operation by operation); small differences remain where PyTorch's vectorised
kernels fuse a multiply-add, so tests compare with a relative tolerance of about 1e-6.
"""
import json, sys, warnings
import torch

# SequentialLR calls scheduler.step(0) at its milestone, which PyTorch 1.13 warns about.
warnings.filterwarnings("ignore", category=UserWarning, module="torch.optim.lr_scheduler")

torch.manual_seed(1234)
STEPS = 5
SHAPES = {"w": [3, 4], "b": [4], "scale": [], "sometimes": [2]}
# "sometimes" gets no gradient at steps 1 and 3 (0-based).
NO_GRAD = {("sometimes", 1), ("sometimes", 3)}


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


init = {n: torch.randn(s, dtype=torch.float32) for n, s in SHAPES.items()}
grads = []
for k in range(STEPS):
    g = {}
    for n, s in SHAPES.items():
        # gradients of varying size, one tiny entry, so that eps and bias correction matter
        g[n] = None if (n, k) in NO_GRAD else (torch.randn(s, dtype=torch.float32) * (0.5 + k)).float()
    if g["w"] is not None:
        g["w"].view(-1)[0] = 1e-4
    grads.append(g)


def run(config, sched=None, sched_desc=None):
    params = {n: init[n].clone().requires_grad_(True) for n in SHAPES}
    order = list(SHAPES)
    kw = {k: v for k, v in config.items() if k != "name"}
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[config["name"]]
    opt = cls([params[n] for n in order], foreach=False, **kw)
    scheduler = sched(opt) if sched else None
    out = {"config": config, "params_after": []}
    lrs = []
    for k in range(STEPS):
        lrs.append(opt.param_groups[0]["lr"])
        for n in order:
            g = grads[k][n]
            params[n].grad = None if g is None else g.clone()
        opt.step()
        if scheduler:
            scheduler.step()
        out["params_after"].append({n: flat(params[n]) for n in order})
    if scheduler:
        out["lrs"] = lrs
        out["schedule"] = sched_desc
    state = {}
    for n in order:
        st = opt.state.get(params[n], {})
        if "step" in st:
            state[n + ".step"] = float(st["step"])
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if st.get(key) is not None:
                state[n + "." + key] = flat(st[key])
    out["state"] = state
    return out


def warmup_cosine(opt, W, T, s, m):
    return torch.optim.lr_scheduler.SequentialLR(
        opt, [torch.optim.lr_scheduler.LinearLR(opt, start_factor=s, end_factor=1.0, total_iters=W),
              torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T - W, eta_min=m)], milestones=[W])


optimizers = [
    run({"name": "adam", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}),
    run({"name": "adam", "lr": 2e-2, "betas": [0.8, 0.99], "eps": 1e-3, "weight_decay": 0.1}),
    run({"name": "adamw", "lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}),
    run({"name": "adamw", "lr": 5e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05},
        sched=lambda o: warmup_cosine(o, 2, 4, 0.25, 1e-3),
        sched_desc={"kind": "warmup_cosine", "warmup_steps": 2, "total_steps": 4, "warmup_start_factor": 0.25,
                    "min_lr": 1e-3}),
    run({"name": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True}),
    run({"name": "sgd", "lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.001, "nesterov": False}),
    run({"name": "sgd", "lr": 0.1, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False}),
]


def schedule_lrs(make, base_lr, n):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    lrs = []
    for _ in range(n + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


schedules = [
    {"kind": "step", "base_lr": 0.1, "step_size": 3, "gamma": 0.5,
     "lrs": schedule_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 0.1, 12)},
    {"kind": "warmup_cosine", "base_lr": 1e-2, "warmup_steps": 4, "total_steps": 12, "warmup_start_factor": 0.1,
     "min_lr": 1e-4, "lrs": schedule_lrs(lambda o: warmup_cosine(o, 4, 12, 0.1, 1e-4), 1e-2, 12)},
    {"kind": "warmup_cosine", "base_lr": 3e-3, "warmup_steps": 0, "total_steps": 10, "warmup_start_factor": 1.0,
     "min_lr": 0.0,
     "lrs": schedule_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.0), 3e-3, 10)},
]

clip = []
for max_norm in (0.5, 100.0):
    ps = {n: init[n].clone().requires_grad_(True) for n in SHAPES}
    for n in SHAPES:
        ps[n].grad = grads[1][n].clone() if grads[1][n] is not None else None
    before = {n: (flat(ps[n].grad) if ps[n].grad is not None else None) for n in SHAPES}
    total = torch.nn.utils.clip_grad_norm_([ps[n] for n in SHAPES], max_norm)
    clip.append({"max_norm": max_norm, "grads": before, "total_norm": float(total),
                 "clipped": {n: flat(ps[n].grad) for n in SHAPES if ps[n].grad is not None}})

doc = {
    "generator": "tests/optim/make_optim_golden.py",
    "torch_version": torch.__version__,
    "params": {n: {"shape": SHAPES[n], "init": flat(init[n])} for n in SHAPES},
    "grads": [{n: (flat(g[n]) if g[n] is not None else None) for n in SHAPES} for g in grads],
    "optimizers": optimizers,
    "schedules": schedules,
    "clip": clip,
}
with open(sys.argv[1], "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
