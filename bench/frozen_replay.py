"""The frozen stage of the transfer case, replayed: fastai's loop and ours from the same
weights on the same batches, dropout off, so any difference is the loops' arithmetic.

Per seed: fastai's learner of `accuracy.py` (its `set_seed`, data loaders, `vision_learner`)
loads the body and `freeze()`s; its training loader's augmented batches of 3 epochs are
recorded; fastai's `fit_one_cycle(3)` then runs on those batches, and ours (`create_cnn`,
`freeze()`, float32) starts from fastai's initial state_dict and runs `fit_one_cycle(3)` on the
same batches. Each library validates with its own loader (the same photos; the resize of the
validation crop differs by resampling). Prints one JSON line per seed: both final errors and
both per-step training losses (fastai's Recorder keeps smoothed losses; they are unsmoothed
here to compare with ours' raw ones). The validation resize, ablated: each final model is
also evaluated on the other library's validation inputs (`cross`: error of each model on
each library's inputs), and the two libraries' inputs of the same file are compared
(`valid_input_diff`: mean and largest absolute difference, in units of one 8-bit level of
the unnormalized image). `--own-data`: no replay, each library on its own loader with dropout
on, from the same initial weights (the head's initialization ablated); with `--aug none`,
`--aug swapped` (each loop with the other library's augmentation) or `--aug loader` (our loop
on fastai's training loader, live: its windows, shuffle and augmentation; our loop's own
dropout draws and optimizer), which tells our loader's share of a gap from our loop's;
`--dropout off` turns both models' dropout off in those runs, `--dropout seeded` draws both
models' masks from a generator of their own, seeded alike.

Runs in the fastai interpreter (FASTAI_PYTHON, see bench_train.py), with a body from
`accuracy.py pretrain`:

    $FASTAI_PYTHON bench/frozen_replay.py --body body.pt --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
import accuracy  # noqa: E402  (bench/accuracy.py, after the path above)

SMOOTH = 0.98  # fastai's Recorder: AvgSmoothLoss(beta=0.98), debiased


class Live:
    """fastai's training loader as ours' Learner takes one: plain-tensor batches, each pass a
    fresh fastai epoch (its shuffle and augmentation)."""

    def __init__(self, dl) -> None:
        self.dl = dl

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for x, y in self.dl:
            yield x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)

    def set_epoch(self, epoch: int) -> None:
        """Ours' Learner tells the loader its epoch; fastai's loader draws its own."""


class Replay:
    """A training loader for either Learner: yields the recorded batches of one epoch per
    pass, in order."""

    def __init__(self, epochs: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        self.epochs, self.passes = epochs, 0

    def __len__(self) -> int:
        return len(self.epochs[0])

    def __iter__(self):
        batches = self.epochs[self.passes % len(self.epochs)]
        self.passes += 1
        return iter(batches)

    def set_epoch(self, epoch: int) -> None:
        """Ours' Learner tells the loader its epoch; the replay ignores it."""


class SeededDropout(torch.nn.Module):
    """nn.Dropout whose masks come from a generator of its own (seeded), not the process'
    global one: both loops then draw the same sequence of masks whatever else draws."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)


def seeded_dropout(model: torch.nn.Module, seed: int) -> None:
    """Replace every nn.Dropout of `model` by a SeededDropout sharing one generator."""
    generator = torch.Generator().manual_seed(seed)
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Dropout):
                setattr(parent, name, SeededDropout(child.p, generator))


def no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def unsmoothed(values: list[float]) -> list[float]:
    """fastai's debiased exponential average back to the raw losses."""
    raw, prev = [], 0.0
    for t, v in enumerate(values, 1):
        cur = v * (1 - SMOOTH**t)
        raw.append((cur - SMOOTH * prev) / (1 - SMOOTH))
        prev = cur
    return raw


STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)  # imagenet_stats, both libraries


def _stack(batches, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    xs, ys = [], []
    for x, y in batches:
        xs.append(x.as_subclass(torch.Tensor).float().contiguous())
        ys.append(y.as_subclass(torch.Tensor))
    return torch.cat(xs), torch.cat(ys), names


def fastai_valid(learn) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(normalized inputs, targets, class/file names) of fastai's validation set, in order."""
    return _stack(learn.dls.valid, [_name(f) for f in learn.dls.valid_ds.items])


def ours_valid(learn) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(normalized inputs, targets, class/file names) of our validation set, in order."""
    return _stack(learn.data.valid_dl, [_name(f) for f in learn.data.valid_ds.items])


def _name(f) -> str:
    return f"{Path(f).parent.name}/{Path(f).name}"


@torch.no_grad()
def error(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The error rate of `model` (eval mode, float32) on inputs x with targets y."""
    model.eval()
    pred = torch.cat([model(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
    return float((pred != y).float().mean())


def input_diff(a: tuple, b: tuple) -> dict:
    """Mean and largest |a - b| over the files both hold, in 8-bit levels (x * std * 255)."""
    where = {n: i for i, n in enumerate(b[2])}
    pairs = [(i, where[n]) for i, n in enumerate(a[2]) if n in where]
    ia = torch.tensor([i for i, _ in pairs])
    ib = torch.tensor([k for _, k in pairs])
    d = ((a[0][ia] - b[0][ib]) * STD * 255).abs()
    return {
        "files": len(pairs),
        "same_labels": bool((a[1][ia] == b[1][ib]).all()),
        "mean": round(float(d.mean()), 3),
        "max": round(float(d.max()), 2),
    }


def replay(
    data: Path,
    body: dict,
    seed: int,
    epochs: int = 3,
    own_data: bool = False,
    aug: str = "own",
    dropout: str = "on",
) -> dict:
    """One seed (module doc). own_data: no replay; each library trains on its own loader
    (windows, augmentation, shuffle) with dropout on, from the same initial weights: what is
    left of a gap then comes from the data and dropout draws, not from the head's
    initialization. aug (own_data only): 'own', 'none' (no augmentation in either),
    'swapped' (each library's loop with the other's augmentation: accuracy.py's ours_aug /
    fastai_aug) or 'loader' (ours' loop on fastai's own training loader, `Live`).
    dropout (own_data): 'on', 'off' (both models' dropout off) or 'seeded' (both models'
    masks from a generator of their own, seeded alike: `SeededDropout`)."""
    fastai_opts = {"none": {"no_aug": 1}, "swapped": {"ours_aug": 1}}.get(aug, {})
    ours_opts = {"none": {"no_aug": 1}}.get(aug, {})
    fastai = accuracy.fastai_learner(data, seed, fastai_opts)
    fastai.model[0].load_state_dict(body)
    fastai.freeze()
    start = copy.deepcopy(fastai.model.state_dict())
    if dropout == "off":
        no_dropout(fastai.model)
    elif dropout == "seeded":
        seeded_dropout(fastai.model, seed)
    plain = torch.Tensor
    recorded = []
    if not own_data:
        recorded = [
            [
                (x.as_subclass(plain).clone(), y.as_subclass(plain).clone())
                for x, y in fastai.dls.train
            ]
            for _ in range(epochs)
        ]
        no_dropout(fastai.model)
        fastai.dls.loaders[0] = Replay(recorded)
    with fastai.no_bar(), fastai.no_logging():
        fastai.fit_one_cycle(epochs)
    ours = accuracy.ours_learner(data, seed, ours_opts)
    ours.model.load_state_dict(start)
    ours.freeze()
    ours.to_fp32()
    if aug == "swapped":
        accuracy.use_fastai_augmentation(ours.data.train_dl, accuracy.SETTINGS["size"])
    if aug == "loader":
        ours.data.train_dl = Live(fastai.dls.train)
    if dropout == "off":
        no_dropout(ours.model)
    elif dropout == "seeded":
        seeded_dropout(ours.model, seed)
    if not own_data:
        no_dropout(ours.model)
        ours.data.train_dl = Replay(recorded)
    ours.fit_one_cycle(epochs)
    inputs = {"fastai": fastai_valid(fastai), "ours": ours_valid(ours)}
    models = {"fastai": fastai.model, "ours": ours.model}
    cross = {
        f"{m} model, {i} inputs": error(models[m], *inputs[i][:2]) for m in models for i in inputs
    }
    row = {
        "seed": seed,
        "own_data": own_data,
        "aug": aug,
        "dropout": dropout,
        "fastai_error": float(fastai.recorder.values[-1][2]),
        "ours_error": float(ours.recorder.metrics[-1][0]),
        "cross": cross,
        "valid_input_diff": input_diff(inputs["fastai"], inputs["ours"]),
    }
    if not own_data:
        f_losses = unsmoothed([float(v) for v in fastai.recorder.losses])
        o_losses = [float(v) for v in ours.recorder.raw_losses]
        row["max_loss_diff"] = max(abs(a - b) for a, b in zip(f_losses, o_losses, strict=True))
        row["fastai_losses"] = [round(v, 4) for v in f_losses]
        row["ours_losses"] = [round(v, 4) for v in o_losses]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--body", type=Path, required=True, help="accuracy.py pretrain's output")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default="photos")
    p.add_argument("--own-data", action="store_true", help="no replay: see replay()")
    p.add_argument(
        "--aug", choices=["own", "none", "swapped", "loader"], default="own", help="own-data"
    )
    p.add_argument(
        "--dropout", choices=["on", "off", "seeded"], default="on", help="own-data: see replay()"
    )
    args = p.parse_args()
    if args.aug != "own" and not args.own_data:
        p.error(f"--aug {args.aug} needs --own-data (a replay trains on fastai's own batches)")
    if args.dropout != "on" and not args.own_data:
        p.error(f"--dropout {args.dropout} needs --own-data (a replay has dropout off)")
    body = torch.load(args.body, weights_only=True)
    data = accuracy.data_dir(args.data)
    for seed in (int(s) for s in args.seeds.split(",")):
        print(
            json.dumps(
                replay(
                    data,
                    body,
                    seed,
                    own_data=args.own_data,
                    aug=args.aug,
                    dropout=args.dropout,
                )
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
