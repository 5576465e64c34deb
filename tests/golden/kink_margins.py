"""How close a mobilenet_v2 fixture's training passes come to ReLU6's kinks (0 and 6).

    /usr/bin/python3 kink_margins.py FIXTURE.safetensors [...]

Replays the fixture in float64 from its own `init.*`, `input`, `target` and `config` (as
tests/parity_test.cpp does) and prints, per training step, the ReLU6 inputs nearest to a kink. A
float32 implementation carries rounding errors of about 1e-7 relative in these activations, so an
input closer to a kink than that lands on either side depending on summation order: its gradient
is switched on or off by rounding. Before the first optimizer step this moves one gradient entry;
after it, Adam turns the difference into full-size steps, which is why `final.*` of a fixture can
be out of reach of a correct float32 implementation (tests/golden/README.md).
"""
import json, struct, sys
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision

DT = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64}


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__")
    tensors = {}
    for name, v in header.items():
        s, e = v["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=DT[v["dtype"]]).reshape(v["shape"])
    return json.loads(meta["config"]), tensors


def replay(path, show=4):
    cfg, t = load(path)
    if cfg.get("kind") != "mobilenet_v2":
        return
    m = torchvision.models.mobilenet_v2(width_mult=cfg["width_mult"], num_classes=cfg["num_outputs"], dropout=0.0)
    stem = m.features[0][0]
    m.features[0][0] = nn.Conv2d(cfg["in_channels"], stem.out_channels, 3, 2, 1, bias=False)
    m.load_state_dict({k[len("init."):]: v for k, v in t.items() if k.startswith("init.")})
    m = m.double()
    opt = cfg["optimizer"]
    cls = torch.optim.Adam if opt["name"] == "adam" else torch.optim.AdamW
    o = cls(m.parameters(), lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"], weight_decay=opt["weight_decay"])
    near = []

    def hook(name):
        def f(module, inputs):  # a pre-hook: torchvision's ReLU6 works in place
            x = inputs[0].detach()
            d = torch.minimum(x.abs(), (x - 6).abs()).flatten()
            v, i = torch.topk(d, min(show, d.numel()), largest=False)
            near.extend((float(a), name, int(j), tuple(x.shape)) for a, j in zip(v, i))
        return f

    for name, mod in m.named_modules():
        if isinstance(mod, nn.ReLU6):
            mod.register_forward_pre_hook(hook(name))
    m.train()
    x, y = t["input"].double(), t["target"].double()
    print(path)
    for step in range(cfg["steps"]):
        near.clear()
        o.zero_grad()
        F.mse_loss(m(x), y).backward()
        o.step()
        for margin, name, index, shape in sorted(near)[:show]:
            print(f"  step {step + 1}: {name:24s} input{list(shape)} flat index {index:8d}: {margin:.2e} from a kink")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        replay(p)
