"""How far bf16 autocast moves a CNN's activations and gradients from fp32, stage by stage.

    python bench/bf16_numerics.py                       # resnet18 from scratch, a demo batch
    python bench/bf16_numerics.py --body body.pt        # the same with a trained body loaded
                                                        # (bench/accuracy.py pretrain --out ...)

One training batch of the demo dataset (64 px, bs 64, the training augmentation) goes through
the same weights twice in train mode — fp32, then `torch.autocast("cpu", torch.bfloat16)` with
channels-last (what precision 'auto' runs on a CPU with native bf16) — with dropout switched
off (bf16 draws other dropout masks) and the BatchNorm running statistics restored between
the passes. Printed: the relative error ||bf16 - fp32|| / ||fp32|| of each stage's output and
of each layer's weight gradient. The cross-entropy runs in fp32 in both (autocast's CPU list).

What it showed (bench/README.md, "Why bf16 costs accuracy from scratch"): from a random
initialisation the error grows through the body to about 3 % at its output and 6 % at the
logits, and the gradients differ by 6-45 %; with a trained body it is 0.5 % and 1 %. Each
BatchNorm removes its input's mean, so the rounding error of a bf16 activation (relative to
its magnitude, 2^-9) becomes large relative to what is left, the spread across the batch,
which is small while the features are still undifferentiated.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from fastcore_ext.data import ImageDataBunch, demo_dataset, imagenet_stats
from fastcore_ext.vision import create_cnn, get_transforms


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((b.float() - a.float()).norm() / a.float().norm().clamp_min(1e-30)).item()


def passes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    """(stage outputs, weight gradients) of one train-mode forward/backward; model state
    (BatchNorm running statistics) restored afterwards."""
    acts: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o, n=n: acts.__setitem__(n, o.detach().float().clone())
        )
        for n, m in model.named_modules()
        if n and n.count(".") <= 1
    ]
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model.to(memory_format=fmt)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(x.contiguous(memory_format=fmt))
    F.cross_entropy(out.float(), y).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.load_state_dict(state)
    for h in hooks:
        h.remove()
    return acts, grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--body", type=Path, default=None, help="a body state_dict to load")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}; {args.arch}, body {args.body or 'random'}"
    )
    data = ImageDataBunch.from_folder(
        demo_dataset(), ds_tfms=get_transforms(), size=64, bs=64, num_workers=0,
        cache=True, seed=args.seed, device="cpu",
    ).normalize(imagenet_stats)  # fmt: skip
    learn = create_cnn(data, args.arch, pretrained=False, seed=args.seed, precision="fp32")
    model = learn.model.train()
    if args.body is not None:
        model[0].load_state_dict(torch.load(args.body, weights_only=True))
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x, y = data.one_batch()
    a32, g32 = passes(model, x, y, bf16=False)
    a16, g16 = passes(model, x, y, bf16=True)
    print("\nstage output            rel. error")
    for n in a32:
        print(f"  {n:22s} {rel(a32[n], a16[n]):9.2e}")
    print("\nweight gradient                  rel. error")
    for n in g32:
        if n.endswith("weight"):
            print(f"  {n:32s} {rel(g32[n], g16[n]):9.2e}")


if __name__ == "__main__":
    main()
