"""The embedded demo dataset: procedurally drawn shapes, made offline in seconds.

What it is, honestly: 12 classes of synthetic geometric shapes (arrow, circle, crescent,
cross, ellipse, hexagon, pentagon, rectangle, ring, square, star, triangle), drawn with
Pillow at a random position, scale (radius 28-40% of the side), hue and rotation (within 30
degrees of an upright pose): a light shape (luminance >= 150) on a darker two-color gradient
background (luminance <= 100) with at most one thin line or dot under it, then a light blur
and Gaussian noise, saved as 80 x 80 JPEG files. It is not a photograph data set: its error
rates say nothing about real-world accuracy, and color carries no information about the
class. It exists so the lesson flow (data -> train -> interpret) runs offline on a CPU, from
scratch, in minutes, and still has mistakes worth interpreting: circle/ellipse (aspect
1.3-1.7), square/rectangle (aspect 1.4-2.0) and pentagon/hexagon/circle are the near ones.

History, measured on the shared 2-core CPU with resnet18 from scratch at 64 px (epoch times
there were 2 to 7 minutes while other jobs ran, about 30 s when quiet). Version 2 (octagon
instead of arrow, smaller shapes of any color on any background, more clutter, occlusion and
noise): bs 64, `fit_one_cycle(6, 3e-3)` stayed at chance (error 0.91 -> 0.90). A 10-class
draft of version 3: error 0.90, 0.83, 0.72, 0.60, 0.56 over 5 of 6 epochs. Version 3 (as
this one, but any rotation), the CLI's main job (bs 32, lr_find's valley 4.4e-3,
`fit_one_cycle(6)`): 0.90, 0.81, 0.69, 0.70, 0.58 over its first 5 epochs: learning, but
slowly. Version 4 (this one) limits the rotation, which mostly helps the asymmetric shapes
(arrow, crescent, rectangle, ellipse). The same main job on it (quiet machine, 28-37 s per
epoch, 5 min 28 s in all): stage 1 error 0.89, 0.82, 0.55, 0.35, 0.23, 0.18; after unfreeze,
lr_find (valley 1.6e-4) and `fit_one_cycle(2, slice(1.6e-4, 4.4e-4))`: 0.26, 0.125. Most
confused: hexagon -> circle (22 of 40), pentagon -> hexagon (18).

Layout: ``<dest>/train/<class>/<class>_<i>.jpg`` and ``<dest>/valid/<class>/...`` (so both
`from_folder` and `from_name_re` with ``r'/([^/]+)_\\d+\\.jpg$'`` work). Each image is a
pure function of (seed, class, split, index). The folder is generated under a temporary
name with a marker file written last, then renamed: a half-written folder is never used
and is regenerated, as is one whose count of image files differs from the marker's.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fastcore_ext.checks import check_bool

from .paths import DataPath, data_dir

__all__ = ["DEMO_CLASSES", "demo_dataset"]

DEMO_CLASSES: tuple[str, ...] = (
    "arrow",
    "circle",
    "crescent",
    "cross",
    "ellipse",
    "hexagon",
    "pentagon",
    "rectangle",
    "ring",
    "square",
    "star",
    "triangle",
)

_VERSION = 4
_MARKER = ".complete.json"
_SCALE = 2  # drawn at 2x, downsampled: antialiased edges
_PARALLEL_MIN = 500  # images from which generation uses worker processes
_RADIUS = (0.28, 0.40)  # shape radius, as a fraction of the image side
_ROTATE = 30.0  # largest rotation of a shape, in degrees, from its upright pose
_ELLIPSE = (1.3, 1.7)  # aspect ratio of an ellipse (a circle is 1)
_RECTANGLE = (1.4, 2.0)  # aspect ratio of a rectangle (a square is 1)
_CLUTTER = (0, 2)  # lines and dots drawn under the shape (low inclusive, high exclusive)
_OCCLUDE = (0, 1)  # ... and over it
_BG_LUMA = (0.0, 100.0)  # luminance range (0..255) of the background colors and the clutter
_FG_LUMA = (150.0, 255.0)  # ... and of the shape's fill: a light shape on a darker background
_BLUR = 0.4  # largest Gaussian blur radius
_NOISE = (0.5, 2.0)  # range of the Gaussian noise's standard deviation


# The upright pose of the shapes whose vertex 0 would otherwise point right (radians): a
# polygon or star with a vertex on top, a square standing on a side.
_BASE_ANGLE = {
    "triangle": -math.pi / 2,
    "pentagon": -math.pi / 2,
    "star": -math.pi / 2,
    "square": math.pi / 4,
}


def _polygon(cx: float, cy: float, r: float, n: int, rot: float, aspect: float = 1.0):
    """Vertices of a regular n-gon of radius r, stretched to `aspect` (same area), rotated."""
    ax, ay = r * math.sqrt(aspect), r / math.sqrt(aspect)
    c, s = math.cos(rot), math.sin(rot)
    pts = []
    for k in range(n):
        t = 2 * math.pi * k / n
        x, y = ax * math.cos(t), ay * math.sin(t)
        pts.append((cx + c * x - s * y, cy + s * x + c * y))
    return pts


def _star(cx: float, cy: float, r: float, rot: float, points: int = 5, inner: float = 0.45):
    pts = []
    for k in range(2 * points):
        rad = r if k % 2 == 0 else r * inner
        a = rot + math.pi * k / points
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _cross(cx: float, cy: float, r: float, rot: float, arm: float):
    w = arm * r
    base = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
            (-r, w), (-r, -w), (-w, -w)]  # fmt: skip
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in base]


def _arrow(cx: float, cy: float, r: float, rot: float, shaft: float, head: float):
    """A block arrow of length 2r pointing along `rot`: a shaft of half-width shaft*r, a
    triangular head of half-width head*r over the last 0.8r."""
    w, hw, h = shaft * r, head * r, 0.2 * r
    base = [(-r, -w), (h, -w), (h, -hw), (r, 0.0), (h, hw), (h, w), (-r, w)]
    c, s = math.cos(rot), math.sin(rot)
    return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in base]


def _shape_mask(cls: str, side: int, rng: np.random.Generator) -> Image.Image:
    """A white-on-black mask of one shape of class `cls` with a random pose."""
    mask = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(mask)
    r = side * rng.uniform(*_RADIUS)
    margin = r * 0.9
    cx, cy = rng.uniform(margin, side - margin, size=2)
    rot = rng.uniform(-1.0, 1.0) * math.radians(_ROTATE) + _BASE_ANGLE.get(cls, 0.0)
    circle = 64  # vertices of a smooth round outline
    if cls == "circle":
        d.polygon(_polygon(cx, cy, r, circle, rot), fill=255)
    elif cls == "ellipse":
        d.polygon(_polygon(cx, cy, r, circle, rot, rng.uniform(*_ELLIPSE)), fill=255)
    elif cls == "square":
        d.polygon(_polygon(cx, cy, r, 4, rot), fill=255)
    elif cls == "rectangle":
        asp = rng.uniform(*_RECTANGLE)
        hw, hh = r * 0.72 * math.sqrt(asp), r * 0.72 / math.sqrt(asp)
        c, s = math.cos(rot), math.sin(rot)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        d.polygon([(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners], fill=255)
    elif cls in ("triangle", "pentagon", "hexagon"):
        n = {"triangle": 3, "pentagon": 5, "hexagon": 6}[cls]
        d.polygon(_polygon(cx, cy, r, n, rot), fill=255)
    elif cls == "star":
        d.polygon(_star(cx, cy, r, rot, 5, rng.uniform(0.4, 0.55)), fill=255)
    elif cls == "arrow":
        d.polygon(_arrow(cx, cy, r, rot, rng.uniform(0.2, 0.3), rng.uniform(0.55, 0.75)), fill=255)
    elif cls == "cross":
        d.polygon(_cross(cx, cy, r, rot, rng.uniform(0.25, 0.4)), fill=255)
    elif cls == "ring":
        d.polygon(_polygon(cx, cy, r, circle, rot), fill=255)
        d.polygon(_polygon(cx, cy, r * rng.uniform(0.45, 0.7), circle, rot), fill=0)
    elif cls == "crescent":
        d.polygon(_polygon(cx, cy, r, circle, rot), fill=255)
        off = r * rng.uniform(0.45, 0.7)
        ox, oy = cx + off * math.cos(rot), cy + off * math.sin(rot)
        d.polygon(_polygon(ox, oy, r * rng.uniform(0.85, 1.0), circle, rot), fill=0)
    else:
        raise ValueError(f"cls: expected one of {DEMO_CLASSES}, got {cls!r}")
    return mask


_LUMA_W = np.array([0.299, 0.587, 0.114])


def _color(rng: np.random.Generator, luma: tuple[float, float]) -> np.ndarray:
    """A random RGB color (any hue) whose luminance lies in `luma`."""
    while True:
        c = rng.integers(0, 256, size=3)
        if luma[0] <= _LUMA_W @ c <= luma[1]:
            return c


@functools.lru_cache(maxsize=4)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    return xx, yy


def _blend(a: tuple[int, ...], b: tuple[int, ...], t: Image.Image) -> Image.Image:
    """Colors a -> b along the gradient mask `t` (L image)."""
    return Image.composite(Image.new("RGB", t.size, b), Image.new("RGB", t.size, a), t)


def _render(cls: str, size: int, rng: np.random.Generator) -> Image.Image:
    side = size * _SCALE
    c0, c1 = _color(rng, _BG_LUMA), _color(rng, _BG_LUMA)
    ang = rng.uniform(0, 2 * math.pi)
    xx, yy = _grid(side)
    t = np.clip(0.5 + xx * math.cos(ang) + yy * math.sin(ang), 0, 1)  # (side, side)
    grad = Image.fromarray((t * 255).astype(np.uint8))
    bg = _blend(tuple(c0.tolist()), tuple(c1.tolist()), grad)
    d = ImageDraw.Draw(bg)

    def clutter(k: int) -> None:
        for _ in range(k):
            col = tuple(int(v) for v in _color(rng, _BG_LUMA))
            x0, y0 = rng.uniform(0, side, size=2)
            kind = rng.integers(3)
            if kind == 0:
                x1, y1 = x0 + rng.normal(0, side / 4), y0 + rng.normal(0, side / 4)
                d.line([(x0, y0), (x1, y1)], fill=col, width=int(rng.integers(1, 3) * _SCALE))
            else:
                rr = rng.uniform(1, 2.5 if kind == 1 else 4) * _SCALE
                d.ellipse([x0 - rr, y0 - rr, x0 + rr, y0 + rr], fill=col)

    clutter(int(rng.integers(*_CLUTTER)))
    mask = _shape_mask(cls, side, rng)
    fill = _color(rng, _FG_LUMA)
    shaded = fill * rng.uniform(0.75, 1.0, size=3)  # the fill gets a light gradient too
    bg.paste(_blend(tuple(fill.tolist()), tuple(int(v) for v in shaded), grad), (0, 0), mask)
    clutter(int(rng.integers(*_OCCLUDE)))  # some clutter over the shape: partial occlusion
    img = bg.resize((size, size), Image.Resampling.BOX)
    blur = rng.uniform(0.0, _BLUR)
    if blur > 0.3:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) * rng.uniform(*_NOISE)
    return Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))


def _write_class_split(folder: Path, ci: int, si: int, n: int, size: int, seed: int) -> int:
    """Render and save the n images of class `ci` in split `si` (0 train, 1 valid)."""
    cls = DEMO_CLASSES[ci]
    out = folder / ("train", "valid")[si] / cls
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng([seed, ci, si, i])
        img = _render(cls, size, rng)
        img.save(out / f"{cls}_{i:04d}.jpg", quality=int(rng.integers(80, 96)))
    return n


def _generate(folder: Path, n_per_class: int, size: int, seed: int, valid_pct: float) -> int:
    """Every image, in forked worker processes when there are several cores (each image is
    a pure function of its indices, so the result does not depend on the split of work)."""
    n_valid = max(1, round(n_per_class * valid_pct))
    jobs = [
        (folder, ci, si, n, size, seed)
        for ci in range(len(DEMO_CLASSES))
        for si, n in enumerate((n_per_class - n_valid, n_valid))
    ]
    workers = min(4, os.cpu_count() or 1)
    if (
        workers > 1
        and n_per_class * len(DEMO_CLASSES) >= _PARALLEL_MIN
        and "fork" in mp.get_all_start_methods()
    ):
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return sum(pool.map(_write_class_split, *zip(*jobs, strict=True)))
    return sum(_write_class_split(*job) for job in jobs)


def _count_images(folder: Path) -> int:
    """The JPEG files under ``<folder>/<split>/<class>/`` (a directory listing, no decoding)."""
    return sum(1 for _ in folder.glob("*/*/*.jpg"))


def _marker_ok(folder: Path, params: dict) -> bool:
    """The folder is complete for `params`: its marker records them, and as many image files
    as the marker counts are there (a class folder deleted since is noticed)."""
    try:
        meta = json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("params") == params and meta.get("images") == _count_images(folder)


def demo_dataset(
    dest: str | os.PathLike | None = None,
    *,
    n_per_class: int = 200,
    size: int = 80,
    seed: int = 0,
    valid_pct: float = 0.2,
    force: bool = False,
) -> DataPath:
    """Generate the demo dataset once (12 classes x `n_per_class` JPEGs of `size` px;
    `valid_pct` of each class in valid/) and return its folder (a `DataPath`, with `ls()`).

    dest: the folder; default ``<data_dir()>/demo`` for the default parameters, else
    ``<data_dir()>/demo_n<n>_s<size>_seed<seed>``. An existing complete folder with the same
    parameters and as many image files as it was written with is reused; a half-written or
    different one, or one whose count of image files differs from its marker's (a class
    folder deleted), is replaced. Defaults: 2400 images (12 classes of 200: 1920 train, 480
    valid), about 8 s on the 2-core CPU, spread over up to 4 processes.
    """
    for name, v, lo in (("n_per_class", n_per_class, 2), ("size", size, 16), ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, Integral) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    n_per_class, size, seed = int(n_per_class), int(size), int(seed)
    if not (isinstance(valid_pct, Real) and not isinstance(valid_pct, bool) and 0 < valid_pct < 1):
        raise ValueError(f"valid_pct: expected a float in (0, 1), got {valid_pct!r}")
    check_bool("force", force)
    params = {"version": _VERSION, "n_per_class": n_per_class, "size": size, "seed": seed,
              "valid_pct": float(valid_pct)}  # fmt: skip
    if dest is None:
        default = n_per_class == 200 and size == 80 and seed == 0 and valid_pct == 0.2
        dest = data_dir() / ("demo" if default else f"demo_n{n_per_class}_s{size}_seed{seed}")
    dest = DataPath(Path(dest).expanduser())
    if not force and _marker_ok(dest, params):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        count = _generate(tmp, n_per_class, size, seed, valid_pct)
        (tmp / _MARKER).write_text(json.dumps({"params": params, "images": count}))
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not _marker_ok(dest, params):  # not another process finishing the same job
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
