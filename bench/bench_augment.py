"""Benchmarks of ops.augment_normalize (kernel 1) against the paths it replaces.

Run: `python -m pytest bench/bench_augment.py -q` (add `--benchmark-disable` for a smoke run).

Per device, the same batch and the same per-sample parameters (rotation, zoom, flip,
translation as one matrix; brightness/contrast) through:
  ours        ops.augment_normalize: uint8 in, normalized float32 out, one pass;
  fastai      pure torch as fastai's GPU pipeline does it: images.float() / 255, affine_grid +
              grid_sample (bilinear, reflection), logit-space lighting, (x - mean) / std;
  tv_loop     a torchvision v2 per-image loop: affine (+ flip), resize, brightness, contrast,
              to float, normalize (CPU only: on the GPU the loop is launch-bound, ~26 ms for
              256 images on an H200 as measured in the issue);
  copy        a large tensor copy, whose rate (bytes read + written per second) gives the
              memory-bandwidth floor of ours: (input bytes + output bytes) / rate.
Variants of ours (no lighting, nearest) show what each stage costs. The last test prints the
medians, the ratios and the percentage of the floor (medians of this run only: compare ratios,
the machine is shared).

CPU: 64 x 3 x 64 x 64 uint8 channels_last -> 64 x 3 x 56 x 56 float32, default threads.
CUDA: 256 x 3 x 256 x 256 -> 256 x 3 x 224 x 224, timed with synchronization around each call;
ours also queued 50 calls at a time between CUDA events ("ours_queued": the kernel's rate
without the host's per-call latency). Other CUDA kernel variants are timed against the
production one by bench/dev/augment_normalize.cu.
"""

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from fastcore_ext import ops

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SHAPES = {"cpu": (64, 3, 64, 64, 56), "cuda": (256, 3, 256, 256, 224)}
RESULTS: dict[tuple[str, str], tuple[float, float]] = {}  # (device, name) -> (median, min) s

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]


class Batch:
    """One batch and its per-sample parameters, fastai-like (max_rotate=10, zoom in [1, 1.1],
    flips, small translations, max_lighting=0.2)."""

    def __init__(self, device: str, seed: int = 0):
        B, C, H, W, S = SHAPES[device]
        g = torch.Generator().manual_seed(seed)
        u = lambda n: torch.rand(n, generator=g)  # noqa: E731
        self.size = S
        self.images = (
            torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=g)
            .contiguous(memory_format=torch.channels_last)
            .to(device)
        )
        self.angle = (u(B) * 2 - 1) * 10.0  # degrees
        self.zoom = 1.0 + 0.1 * u(B)
        self.flip = u(B) < 0.5
        self.shift = (u(B * 2).view(B, 2) * 2 - 1) * 0.05  # normalized units
        self.brightness = 0.4 + 0.2 * u(B)
        self.contrast = torch.exp((u(B) * 2 - 1) * math.log(1 / 0.8))
        rad = self.angle * math.pi / 180
        s = 1 / self.zoom
        sx = torch.where(self.flip, -s, s)
        m = torch.zeros(B, 3, 3)
        m[:, 0, 0], m[:, 0, 1] = sx * rad.cos(), -s * rad.sin()
        m[:, 1, 0], m[:, 1, 1] = sx * rad.sin(), s * rad.cos()
        m[:, :2, 2] = self.shift
        m[:, 2, 2] = 1
        self.matrices = m.to(device)
        self.lighting = torch.stack([self.brightness, self.contrast], 1).to(device)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def bytes_moved(self) -> int:
        """What the fused op must move at least: the uint8 input once, the float32 output once."""
        B, C = self.images.shape[:2]
        return self.images.numel() + B * C * self.size * self.size * 4


def ours(b: Batch, **kw) -> torch.Tensor:
    return ops.augment_normalize(
        b.images, b.matrices, b.size, mean=MEAN, std=STD, lighting=b.lighting, **kw
    )


def fastai_style(b: Batch) -> torch.Tensor:
    B, C = b.images.shape[:2]
    x = b.images.float() / 255
    grid = F.affine_grid(b.matrices[:, :2], [B, C, b.size, b.size], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    br, ct = b.lighting[:, 0].view(B, 1, 1, 1), b.lighting[:, 1].view(B, 1, 1, 1)
    y = torch.sigmoid(ct * (torch.logit(y.clamp(1e-6, 1 - 1e-6)) + torch.logit(br)))
    return (y - b.mean) / b.std


def torchvision_loop(b: Batch) -> torch.Tensor:
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    H, W = b.images.shape[-2:]
    out = []
    for k in range(b.images.shape[0]):
        img = TF.affine(
            b.images[k],
            angle=float(b.angle[k]),
            translate=[float(b.shift[k, 0]) * W / 2, float(b.shift[k, 1]) * H / 2],
            scale=float(b.zoom[k]),
            shear=[0.0, 0.0],
            interpolation=InterpolationMode.BILINEAR,
        )
        if b.flip[k]:
            img = TF.horizontal_flip(img)
        img = TF.resize(img, [b.size, b.size], antialias=False)
        img = TF.adjust_brightness(img, 2 * float(b.brightness[k]))
        img = TF.adjust_contrast(img, float(b.contrast[k]))
        img = TF.to_dtype(img, torch.float32, scale=True)
        out.append(TF.normalize(img, MEAN, STD))
    return torch.stack(out)


def _run(benchmark, device: str, name: str, fn, rounds: int):
    if device == "cuda":

        def call():
            fn()
            torch.cuda.synchronize()

    else:
        call = fn
    for _ in range(3):
        call()  # warm-up: allocations, thread pool, cuDNN/cuBLAS handles
    benchmark.pedantic(call, rounds=rounds, iterations=1)
    if benchmark.stats is not None:  # None with --benchmark-disable
        RESULTS[(device, name)] = (benchmark.stats.stats.median, benchmark.stats.stats.min)


@pytest.fixture(scope="module", params=DEVICES)
def batch(request) -> Batch:
    return Batch(request.param)


def test_ours(benchmark, batch):
    _run(benchmark, batch.images.device.type, "ours", lambda: ours(batch), rounds=200)


def test_ours_no_lighting(benchmark, batch):
    b = batch
    fn = lambda: ops.augment_normalize(b.images, b.matrices, b.size, mean=MEAN, std=STD)  # noqa: E731
    _run(benchmark, b.images.device.type, "ours_no_lighting", fn, rounds=200)


def test_ours_nearest_no_lighting(benchmark, batch):
    b = batch
    fn = lambda: ops.augment_normalize(  # noqa: E731
        b.images, b.matrices, b.size, mean=MEAN, std=STD, mode="nearest"
    )
    _run(benchmark, b.images.device.type, "ours_nearest_no_lighting", fn, rounds=200)


def _back_to_back(fn, calls: int = 50, repeats: int = 5) -> tuple[float, float]:
    """Seconds per call of `calls` calls queued back to back (CUDA events around them, no
    synchronization in between: the kernel's rate without the host's per-call latency).
    Returns (median, min) over `repeats`."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    per_call = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        per_call.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(per_call), min(per_call)


def test_ours_cuda_queued(batch):
    """The CUDA kernel queued 50 calls at a time (no synchronization in between)."""
    if batch.images.device.type != "cuda":
        pytest.skip("CUDA only")
    RESULTS[("cuda", "ours_queued")] = _back_to_back(lambda: ours(batch))


def test_fastai_style(benchmark, batch):
    _run(benchmark, batch.images.device.type, "fastai", lambda: fastai_style(batch), rounds=50)


def test_torchvision_loop(benchmark, batch):
    if batch.images.device.type == "cuda":
        pytest.skip("per-image loop on CUDA: launch-bound, see the module docstring")
    _run(benchmark, "cpu", "tv_loop", lambda: torchvision_loop(batch), rounds=10)


def test_copy_rate(benchmark, batch):
    """A 256 MiB float copy: bytes read + written per second."""
    device = batch.images.device.type
    src = torch.ones(64 * 2**20, device=device)
    dst = torch.empty_like(src)
    _run(benchmark, device, "copy", lambda: dst.copy_(src), rounds=20)


def test_summary(capsys, batch):
    """Prints the table of this run (needs the benchmarks above in the same session). Medians
    and minima: on a shared machine the minimum is the better estimate of the uncontended
    time, the median of what a user sees at that moment."""
    device = batch.images.device.type
    r = {k[1]: v for k, v in RESULTS.items() if k[0] == device}
    if "ours" not in r:
        pytest.skip("no timings (benchmarks disabled or deselected)")
    B, C, H, W, S = SHAPES[device]
    lines = [
        f"\naugment_normalize on {device} ({torch.get_num_threads()} threads): "
        f"{B}x{C}x{H}x{W} uint8 channels_last -> {B}x{C}x{S}x{S} float32",
        f"  {'':26s} {'median ms':>10s} {'x ours':>7s} {'min ms':>10s} {'x ours':>7s}",
    ]
    names = ("ours", "ours_no_lighting", "ours_nearest_no_lighting", "ours_queued", "fastai",
             "tv_loop")  # fmt: skip
    for name in names:
        if name in r:
            (med, mn), (omed, omn) = r[name], r["ours"]
            lines.append(
                f"  {name:26s} {med * 1e3:10.3f} {med / omed:7.2f} {mn * 1e3:10.3f} {mn / omn:7.2f}"
            )
    out_px = B * S * S
    lines.append(
        f"  ours: {r['ours'][0] * 1e9 / out_px:.2f} ns (median), "
        f"{r['ours'][1] * 1e9 / out_px:.2f} ns (min) per output pixel ({C} channels)"
    )
    if "copy" in r:
        moved = batch.bytes_moved()
        for label, k in (("median", 0), ("min", 1)):
            rate = 2 * 64 * 2**20 * 4 / r["copy"][k]
            floor = moved / rate
            lines.append(
                f"  {label}: copy rate {rate / 1e9:.1f} GB/s -> floor {floor * 1e3:.3f} ms for "
                f"{moved / 1e6:.2f} MB; ours at {100 * floor / r['ours'][k]:.1f} % of it "
                f"({moved / r['ours'][k] / 1e9:.1f} GB/s)"
            )
        if "ours_queued" in r:
            rate = 2 * 64 * 2**20 * 4 / r["copy"][0]
            lines.append(
                f"  ours_queued: {100 * moved / rate / r['ours_queued'][0]:.1f} % of the median "
                f"floor ({moved / r['ours_queued'][0] / 1e9:.1f} GB/s)"
            )
    with capsys.disabled():
        print("\n".join(lines))
