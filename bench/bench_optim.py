"""One full optimizer step, schedule included: fastcore_ext's fused Adam/SGD with the one-cycle
schedule on the device, against torch's AdamW/SGD (for-loop, foreach, fused) each followed by
OneCycleLR.step() (lr and momentum cycled, as fastai's fit_one_cycle does).

Parameter sets: torchvision resnet18/34/50 (weights=None), random grads, 3 param groups
(stem..layer2, layer3..layer4, fc). Runs on CUDA when available, else on the CPU.
`pytest bench/bench_optim.py` prints, before the pytest-benchmark table, ms per step, our
speedup over each torch variant and the share of the memory floor reached: Adam moves at least
28 bytes per parameter (read p, g, m, v; write p, m, v), SGD 20 (p, g, buf; p, buf); the floor
is those bytes over the copy rate measured in the same run (bytes read + written per second by
a large tensor copy), and over the rate of a large in-place update (see `test_rmw_rate`).
"""

import random
import statistics
import time

import pytest
import torch
import torchvision

from fastcore_ext.optim import SGD, Adam

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# CUDA steps are asynchronous: time this many steps, then synchronize (ms per step = / STEPS).
STEPS = 20 if DEVICE.type == "cuda" else 1
MODELS = ["resnet18", "resnet34", "resnet50"]
LR_MAX = (1e-4, 1e-3, 1e-2)
TOTAL = 10**6  # schedules never reach their end during the benchmark
IMPLS = [
    "ours_adam",
    "ours_sgd",
    "torch_adamw_forloop",
    "torch_adamw_foreach",
    "torch_adamw_fused",
    "torch_sgd_forloop",
    "torch_sgd_foreach",
    "torch_sgd_fused",
]
BYTES_PER_PARAM = {"adam": 28, "sgd": 20}
RESULTS: dict[tuple[str, str], float] = {}  # (model, impl) -> ms per step


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def param_groups(name: str) -> list[list[torch.Tensor]]:
    """The model's params in 3 groups (stem..layer2, layer3..layer4, fc), with random grads."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    parts = [
        [model.conv1, model.bn1, model.layer1, model.layer2],
        [model.layer3, model.layer4],
        [model.fc],
    ]
    groups = []
    for modules in parts:
        ps = [p.detach().to(DEVICE).requires_grad_() for m in modules for p in m.parameters()]
        for p in ps:
            p.grad = torch.randn_like(p)
        groups.append(ps)
    return groups


def make_step(impl: str, groups: list[list[torch.Tensor]]):
    """A function doing one optimizer step and, for torch, one OneCycleLR step."""
    if impl.startswith("ours"):
        pgs = [{"params": ps} for ps in groups]
        opt = Adam(pgs) if impl == "ours_adam" else SGD(pgs, mom=0.9)  # torch's: momentum=0.9
        opt.set_one_cycle(TOTAL, list(LR_MAX))
        return opt.step
    algo, variant = impl.split("_")[1:]
    kw = {"foreach": False} if variant == "forloop" else {variant: True}
    pgs = [{"params": ps} for ps in groups]
    if algo == "adamw":
        opt = torch.optim.AdamW(pgs, lr=1e-3, betas=(0.95, 0.99), eps=1e-5, weight_decay=0.01, **kw)
    else:
        opt = torch.optim.SGD(pgs, lr=1e-3, momentum=0.9, **kw)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, list(LR_MAX), total_steps=TOTAL)

    def step():
        opt.step()
        sched.step()

    return step


def run_steps(step):
    for _ in range(STEPS):
        step()
    _sync()


def interleaved(model: str, impls: list[str], rounds: int = 11) -> dict[str, float]:
    """ms per step of each impl, timed in rotation (a random order each round) so that every
    impl sees the same machine load: the ratios stay meaningful on a busy machine."""
    groups = param_groups(model)
    steps = {impl: make_step(impl, groups) for impl in impls}
    for step in steps.values():
        run_steps(step)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    order = list(impls)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for impl in order:
            t0 = time.perf_counter()
            run_steps(steps[impl])
            times[impl].append((time.perf_counter() - t0) / STEPS * 1e3)
    return {impl: statistics.median(ts) for impl, ts in times.items()}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Print ms/step, ratios and % of the floor once every benchmark of the module ran."""
    yield
    copy_rate = RESULTS.get(("copy", "GB/s"), 0.0)
    rmw_rate = RESULTS.get(("rmw", "GB/s"), 0.0)
    lines = ["", f"Optimizer step incl. schedule on {_device_name()}, torch {torch.__version__}"]
    if copy_rate:
        lines[-1] += f", copy rate {copy_rate:.1f} GB/s (read + write)"
    if rmw_rate:
        lines[-1] += f", in-place rate {rmw_rate:.1f} GB/s"
    for model in MODELS:
        n = RESULTS.get((model, "params"))
        if not n or not copy_rate:
            continue
        lines.append(f"{model}: {n / 1e6:.1f} M params")
        for algo, ours, rivals in (
            ("adam", "ours_adam", [i for i in IMPLS if "adamw" in i]),
            ("sgd", "ours_sgd", [i for i in IMPLS if "torch_sgd" in i]),
        ):
            t = RESULTS.get((model, ours))
            if t is None:
                continue
            floor = BYTES_PER_PARAM[algo] * n / (copy_rate * 1e9) * 1e3
            text = f"  {ours:10s} {t:8.3f} ms ({100 * floor / t:5.1f}% of the copy floor"
            if rmw_rate:
                floor_rmw = BYTES_PER_PARAM[algo] * n / (rmw_rate * 1e9) * 1e3
                text += f", {100 * floor_rmw / t:5.1f}% of the in-place floor {floor_rmw:.3f} ms"
            parts = [text + ")"]
            for rival in rivals:
                r = RESULTS.get((model, rival))
                if r is not None:
                    parts.append(f"{rival.split('_', 1)[1]} {r:.3f} ms = {r / t:.2f}x")
            lines.append(" | ".join(parts))
    for model in MODELS:
        inter = RESULTS.get((model, "interleaved"))
        if inter:
            for ours in ("ours_adam", "ours_sgd"):
                algo = "adamw" if ours == "ours_adam" else "sgd"
                ratios = ", ".join(
                    f"{impl} {t:.2f} ms = {t / inter[ours]:.2f}x"
                    for impl, t in inter.items()
                    if impl.startswith(f"torch_{algo}")
                )
                lines.append(f"{model} interleaved: {ours} {inter[ours]:.2f} ms | {ratios}")
    if len(lines) == 2:
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))


def _device_name() -> str:
    if DEVICE.type == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({torch.get_num_threads()} threads)"


def test_copy_rate(benchmark):
    """Bytes read + written per second by a large copy (beyond the last-level cache)."""
    n = 2**26 if DEVICE.type == "cpu" else 2**28
    src = torch.randn(n, device=DEVICE)
    dst = torch.empty_like(src)

    def copy():
        for _ in range(STEPS):
            dst.copy_(src)
        _sync()

    benchmark.pedantic(copy, rounds=10, warmup_rounds=2)
    if benchmark.stats is not None:  # (None under --benchmark-disable)
        RESULTS[("copy", "GB/s")] = 2 * 4 * n * STEPS / benchmark.stats.stats.median / 1e9


def test_rmw_rate(benchmark):
    """Bytes read + written per second by a large in-place update (`x.mul_(c)`): the access
    pattern of an optimizer step. A copy to another buffer also reads the destination (the
    CPU fetches a cache line before writing it), which the copy rate does not count: on this
    kind of CPU the in-place rate is the tighter ceiling."""
    n = 2**26 if DEVICE.type == "cpu" else 2**28
    x = torch.randn(n, device=DEVICE)

    def rmw():
        for _ in range(STEPS):
            x.mul_(1.0000001)
        _sync()

    benchmark.pedantic(rmw, rounds=10, warmup_rounds=2)
    if benchmark.stats is not None:
        RESULTS[("rmw", "GB/s")] = 2 * 4 * n * STEPS / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("model", MODELS)
def test_step(benchmark, model, impl):
    groups = param_groups(model)
    RESULTS[(model, "params")] = sum(p.numel() for ps in groups for p in ps)
    step = make_step(impl, groups)
    run_steps(step)  # state allocation and first-touch outside the timing
    slow = impl.endswith("forloop") and DEVICE.type == "cpu"
    benchmark.pedantic(run_steps, args=(step,), rounds=7 if slow else 15, warmup_rounds=1)
    if benchmark.stats is not None:
        RESULTS[(model, impl)] = benchmark.stats.stats.median / STEPS * 1e3
        benchmark.extra_info["ms_per_step"] = RESULTS[(model, impl)]


INTERLEAVED = [
    "ours_adam",
    "torch_adamw_foreach",
    "torch_adamw_fused",
    "ours_sgd",
    "torch_sgd_fused",
]


@pytest.mark.parametrize("model", ["resnet18", "resnet34"])
def test_interleaved_ratios(model):
    """The CPU targets (ours vs torch's fused and foreach AdamW, resnet18/34), each step timed
    in rotation with the others (see `interleaved`)."""
    RESULTS[(model, "interleaved")] = interleaved(model, INTERLEAVED)
