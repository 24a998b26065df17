"""Random per-sample augmentation parameters, composed into one homography per sample.

fastai's augmentation knobs (`get_transforms` of fastai v1, `aug_transforms` of v2) become an
`AugmentSpec`; `random_params` draws, for a whole batch at once, one 3x3 matrix per sample that
maps OUTPUT normalized coordinates to INPUT normalized coordinates ([-1, 1], the
align_corners=False convention of `F.affine_grid`), plus optional per-sample lighting
(brightness, contrast). The fused kernel `ops.augment_normalize` then reads each uint8 image
once through its matrix and writes the normalized float batch once; `augment_batch` is that
one call per batch.

Composition, applied to an output point p (the rightmost factor acts first)::

    M = C @ W @ F @ R @ Z
      Z  zoom       scale 1/z around a random centre (fastai's `zoom`)
      R  rotation   by a random angle, in pixel space of the output frame
      F  flip       horizontal flip, or one of the 8 dihedral symmetries when flip_vert
      W  warp       fastai's perspective `Warp` (the only factor with a non-affine last row)
      C  crop       the box of the input that fills the output: a random-resized crop when
                    min_scale < 1, else "resize the short side + centre crop"

This is fastai v2's order (`affine_mat = flip @ rotate @ zoom`, then the warp applied to the
resulting coordinates), with the crop (v2's RandomResizedCropGPU, or the plain resize) last.

Randomness: every number comes from one `torch.rand(batch_size, N)` call on the given CPU
`torch.Generator` (N fixed, whatever the knobs), so a seed gives the same parameters on any
device and a knob that is switched off does not shift the draws of the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from torch import Tensor

from fastcore_ext.checks import (
    NotOffered,
    check_bool,
    check_choice,
    check_cpu_generator,
    check_hw,
    check_int,
    check_prob,
    check_real,
)

__all__ = [
    "AugmentSpec",
    "Brightness",
    "Contrast",
    "CropPad",
    "Dihedral",
    "Flip",
    "Hue",
    "RandomErasing",
    "Rotate",
    "Saturation",
    "Warp",
    "Zoom",
    "get_transforms",
    "aug_transforms",
    "epoch_generator",
    "random_params",
    "center_crop_matrices",
    "augment_batch",
]

MODES = ("bilinear", "nearest")
PAD_MODES = ("zeros", "border", "reflection")

# Largest warp magnitude for which fastai's warp alone maps the whole output square to finite
# points: at |x_t| = |y_t| = (sqrt(3) - 1) / 2 a corner of the output reaches the horizon.
MAX_WARP_LIMIT = (math.sqrt(3.0) - 1.0) / 2.0
# max_warp must stay below this: a magnitude of 1 moves a corner by half the square's side.
MAX_WARP = 1.0
# A sample whose composed matrix has w below this at an output corner keeps no warp: a warp
# past MAX_WARP_LIMIT (both magnitudes large; fastai renders that sample folded through
# infinity), or zoom-out, rotation or a very elongated output pushing the warp's domain far out.
_MIN_W = 1e-3
# Random-resized crop: attempts per sample before falling back to the centre crop (as
# torchvision and fastai).
RRC_ATTEMPTS = 10

# Columns of the per-sample uniform draws u[B, _N_DRAWS].
_FLIP, _DIHEDRAL = 0, 1
_ROT_P, _ROT = 2, 3
_ZOOM_P, _ZOOM, _ZOOM_X, _ZOOM_Y = 4, 5, 6, 7
_WARP_PX, _WARP_X, _WARP_PY, _WARP_Y = 8, 9, 10, 11
_BRIGHT_P, _BRIGHT, _CONTRAST_P, _CONTRAST = 12, 13, 14, 15
_RRC = 16  # then RRC_ATTEMPTS groups of (scale, log-ratio, left, top)
_N_DRAWS = _RRC + 4 * RRC_ATTEMPTS


# ---- the spec -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentSpec:
    """Every knob of the random per-sample augmentation (fastai's names and defaults).

    do_flip:      flip horizontally with probability 0.5 (fastai's `Flip(p=0.5)`; p_affine does
                  not apply to flips, as in fastai).
    flip_vert:    with do_flip, use instead a random dihedral symmetry with probability 0.5
                  (fastai's `Dihedral(p=0.5)`: one of the 8 symmetries of the square, drawn
                  uniformly, identity included). Done in pixel space: a 90-degree turn of a
                  non-square output is a true rotation (uncovered parts are padded), not a
                  stretch. Ignored when do_flip is False (as fastai).
    max_rotate:   with probability p_affine, rotate by an angle uniform in
                  [-max_rotate, max_rotate] degrees, in pixel space (a non-square image is not
                  sheared); positive angles turn the content clockwise on screen (fastai's sign).
    min_zoom, max_zoom: with probability p_affine, zoom by z uniform in [min_zoom, max_zoom]
                  around a random centre (fastai v2's `zoom_mat`: scale 1/z, centre offset
                  (1 - 1/z) * (2u - 1) per axis, u uniform in [0, 1]); z < 1 zooms out.
    max_lighting: brightness b and contrast c as fastai v1 defines them: b uniform in
                  [0.5 (1 - max_lighting), 0.5 (1 + max_lighting)], applied with probability
                  p_lighting (else 0.5); c log-uniform in [1 - max_lighting, 1/(1 - max_lighting)],
                  applied with probability p_lighting independently (else 1). The kernel applies
                  y = sigmoid(c * (logit(x) + logit(b))).
    max_warp:     fastai v2's perspective `Warp`: magnitudes x_t, y_t each uniform in
                  [-max_warp, max_warp], each applied with probability p_affine independently
                  (else 0), moving the corners (-1,-1), (-1,1), (1,-1), (1,1) of the square to
                  (-1-y_t, -1-x_t), (-1+y_t, 1+x_t), (1+y_t, -1+x_t), (1-y_t, 1-x_t). In
                  [0, 1). Past MAX_WARP_LIMIT = (sqrt(3) - 1)/2 a draw with both magnitudes
                  large sends a corner of the output beyond the horizon: that sample keeps no
                  warp (fastai renders it folded through infinity). Measured over 200,000
                  draws with both magnitudes on: 1.4 % of them at max_warp 0.4 (fastbook's
                  ``aug_transforms(mult=2)``), 29 % at 0.6, none up to MAX_WARP_LIMIT.
    p_affine:     probability of each of rotation, zoom, warp-x and warp-y, drawn independently.
    p_lighting:   probability of each of brightness and contrast, drawn independently.
    min_scale, ratio: random-resized crop, used only when min_scale < 1 (as fastai v2, which
                  adds RandomResizedCropGPU only then). The crop area is a fraction uniform in
                  [min_scale, 1] of the area of the centre-crop box (the largest box of the
                  output's aspect ratio inside the input, which is the whole input when the
                  aspect ratios agree), its aspect ratio is the output's times r, log r uniform
                  in [log ratio[0], log ratio[1]], and its position is uniform among the
                  positions inside the input. Up to 10 draws per sample; when none fits, the
                  centre-crop box. min_scale == 1 means the centre-crop box, no randomness.
    size:         the output size (int or (h, w)) when the spec carries one; `augment_batch`
                  uses it when its own `size` is None.
    mode:         sampling, "bilinear" or "nearest".
    pad_mode:     "reflection", "border" or "zeros" (grid_sample's padding modes).
    """

    do_flip: bool = True
    flip_vert: bool = False
    max_rotate: float = 10.0
    min_zoom: float = 1.0
    max_zoom: float = 1.1
    max_lighting: float = 0.2
    max_warp: float = 0.2
    p_affine: float = 0.75
    p_lighting: float = 0.75
    min_scale: float = 1.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    size: int | tuple[int, int] | None = None
    mode: str = "bilinear"
    pad_mode: str = "reflection"

    def __post_init__(self) -> None:
        check_bool("do_flip", self.do_flip)
        check_bool("flip_vert", self.flip_vert)
        max_rotate = check_real("max_rotate", self.max_rotate)
        if max_rotate < 0:
            raise ValueError(f"max_rotate should be >= 0 degrees, got {max_rotate}")
        min_zoom = check_real("min_zoom", self.min_zoom)
        max_zoom = check_real("max_zoom", self.max_zoom)
        if min_zoom <= 0:
            raise ValueError(f"min_zoom should be > 0, got {min_zoom}")
        if max_zoom < min_zoom:
            raise ValueError(f"max_zoom should be >= min_zoom ({min_zoom}), got {max_zoom}")
        max_lighting = check_real("max_lighting", self.max_lighting)
        if not 0 <= max_lighting < 1:
            raise ValueError(f"max_lighting should be in [0, 1), got {max_lighting}")
        max_warp = check_real("max_warp", self.max_warp)
        if not 0 <= max_warp < MAX_WARP:
            raise ValueError(f"max_warp should be in [0, {MAX_WARP:g}), got {max_warp}")
        p_affine = check_prob("p_affine", self.p_affine)
        p_lighting = check_prob("p_lighting", self.p_lighting)
        min_scale = check_real("min_scale", self.min_scale)
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale should be in (0, 1], got {min_scale}")
        if not isinstance(self.ratio, (tuple, list)) or len(self.ratio) != 2:
            raise TypeError(f"ratio should be a pair (low, high) of numbers, got {self.ratio!r}")
        ratio = (check_real("ratio[0]", self.ratio[0]), check_real("ratio[1]", self.ratio[1]))
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio should be a pair 0 < low <= high, got {self.ratio!r}")
        if self.size is not None:
            check_hw("size", self.size)
        check_choice("mode", self.mode, MODES)
        check_choice("pad_mode", self.pad_mode, PAD_MODES)
        set_ = object.__setattr__  # normalized values (ints become floats, lists tuples)
        for name, value in (
            ("max_rotate", max_rotate),
            ("min_zoom", min_zoom),
            ("max_zoom", max_zoom),
            ("max_lighting", max_lighting),
            ("max_warp", max_warp),
            ("p_affine", p_affine),
            ("p_lighting", p_lighting),
            ("min_scale", min_scale),
            ("ratio", ratio),
        ):
            set_(self, name, value)
        if isinstance(self.size, list):
            set_(self, "size", tuple(self.size))

    def __len__(self) -> int:
        """2, as fastai v1's ``get_transforms()``: a pair (training transforms, validation
        transforms), so ``tfms[0]`` and ``ds_tfms=(tfms[0], [])`` read as in v1."""
        return 2

    def __getitem__(self, i: int) -> AugmentSpec | list:
        """``spec[0]``: this spec (the training side); ``spec[1]``: [] (the validation side:
        the validation set is never augmented, only presized and centre-cropped)."""
        if isinstance(i, bool) or not isinstance(i, Integral) or not -2 <= i < 2:
            raise IndexError(
                f"index: a get_transforms() pair has items 0 (training) and 1 (validation), "
                f"got {i!r}"
            )
        return self if i % 2 == 0 else []

    @property
    def has_lighting(self) -> bool:
        """False when no sample can get a lighting change (random_params then returns None)."""
        return self.max_lighting > 0 and self.p_lighting > 0


def get_transforms(
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
) -> AugmentSpec:
    """fastai v1's `get_transforms`: the training augmentation as one AugmentSpec.

    Zoom is uniform in [1, max_zoom] (v1 zooms in only). v1 returned a (train, valid) pair of
    transform lists; here validation is always `center_crop_matrices`, so only the training
    spec is returned. The output size comes from the data layer (`size=` of the bunch).
    """
    if isinstance(max_zoom, Real) and not isinstance(max_zoom, bool) and max_zoom < 1:
        raise ValueError(
            f"max_zoom: fastai v1's get_transforms zooms in only, from 1 to max_zoom, so "
            f"max_zoom should be >= 1, got {max_zoom!r} (v2's aug_transforms(min_zoom=, "
            f"max_zoom=) zooms out too)"
        )
    return AugmentSpec(
        do_flip=do_flip,
        flip_vert=flip_vert,
        max_rotate=max_rotate,
        min_zoom=1.0,
        max_zoom=max_zoom,
        max_lighting=max_lighting,
        max_warp=max_warp,
        p_affine=p_affine,
        p_lighting=p_lighting,
    )


def aug_transforms(
    mult: float = 1.0,
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    min_zoom: float = 1.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    size: int | tuple[int, int] | None = None,
    mode: str = "bilinear",
    pad_mode: str = "reflection",
    align_corners: bool = True,
    batch: bool = False,
    min_scale: float = 1.0,
    xtra_tfms: Sequence[object] | None = None,
) -> list[AugmentSpec]:
    """fastai v2's `aug_transforms` (its argument order): a one-element list holding the
    AugmentSpec.

    A list, so `batch_tfms=[*aug_transforms(size=224), Normalize.from_stats(...)]` reads as in
    fastai. mult multiplies max_rotate, max_lighting and max_warp (fastbook's
    ``aug_transforms(mult=2)``). With min_scale < 1 the random-resized crop keeps the output's
    aspect ratio (ratio=(1, 1)), as fastai v2's aug_transforms does.

    align_corners (fastai's, default True): accepted and not applied: the kernel samples
    pixel centres (align_corners=False), which moves a point by at most 0.3 px from where
    fastai's default puts it (a trial, session 27). batch=True (one draw for the whole
    batch) and xtra_tfms (more transforms) are refused: each item gets its own draws of
    the one fused kernel.
    """
    if isinstance(mult, bool) or not isinstance(mult, Real) or not mult >= 0:
        raise ValueError(f"mult: expected a number >= 0, got {mult!r}")
    check_bool("align_corners", align_corners)
    if check_bool("batch", batch):
        raise ValueError(
            "batch=True (one set of random draws for the whole batch) is not offered: the "
            "fused kernel draws each item's transform on its own (batch=False, the default)"
        )
    if xtra_tfms:
        raise ValueError(
            f"xtra_tfms: extra transforms are not offered (the augmentation is one fused "
            f"kernel of flip, rotate, zoom, warp and lighting), got {xtra_tfms!r}"
        )
    if isinstance(max_warp, Real) and isinstance(mult, Real) and max_warp * mult >= MAX_WARP:
        raise ValueError(
            f"max_warp: expected a number below {MAX_WARP:g} (a warp of 1 folds the image), "
            f"got {max_warp!r}"
            if mult == 1
            else f"mult: {mult} makes max_warp {max_warp} x {mult} = {max_warp * mult:g}, not "
            f"below {MAX_WARP:g}; pass a smaller mult or max_warp"
        )
    return [
        AugmentSpec(
            do_flip=do_flip,
            flip_vert=flip_vert,
            max_rotate=max_rotate * mult,
            min_zoom=min_zoom,
            max_zoom=max_zoom,
            max_lighting=max_lighting * mult,
            max_warp=max_warp * mult,
            p_affine=p_affine,
            p_lighting=p_lighting,
            min_scale=min_scale,
            ratio=(1.0, 1.0),
            size=size,
            mode=mode,
            pad_mode=pad_mode,
        )
    ]


# ---- fastai's single augmentations: each a clear refusal -------------------------------------
# fastai v2 also offers each augmentation as a transform of its own (batch_tfms=[Flip(),
# Rotate(30)]); here they are one fused kernel that aug_transforms / get_transforms configure,
# so each name says which of their arguments gives it instead of a NameError.
_KERNEL = "the augmentation is one fused kernel, configured by aug_transforms"
_LIGHTING = "aug_transforms(max_lighting=..., p_lighting=p) draws brightness and contrast"
Flip = NotOffered("Flip", f"{_KERNEL}; a flip alone: aug_transforms(max_rotate=0, max_zoom=1, "
                  "max_warp=0, max_lighting=0)")  # fmt: skip
Dihedral = NotOffered("Dihedral", f"{_KERNEL}; aug_transforms(flip_vert=True) draws the 8 flips")
Rotate = NotOffered("Rotate", f"{_KERNEL}; aug_transforms(max_rotate=max_deg, p_affine=p)")
Zoom = NotOffered("Zoom", f"{_KERNEL}; aug_transforms(min_zoom=..., max_zoom=..., p_affine=p)")
Warp = NotOffered("Warp", f"{_KERNEL}; aug_transforms(max_warp=magnitude, p_affine=p)")
Brightness = NotOffered("Brightness", f"{_KERNEL}; {_LIGHTING}")
Contrast = NotOffered("Contrast", f"{_KERNEL}; {_LIGHTING}")
Saturation = NotOffered("Saturation", f"{_KERNEL}: only brightness and contrast (max_lighting)")
Hue = NotOffered("Hue", f"{_KERNEL}: only brightness and contrast (max_lighting)")
RandomErasing = NotOffered("RandomErasing", f"{_KERNEL}: random erasing is not among its draws")
CropPad = NotOffered(
    "CropPad", "item_tfms=Resize(size, method='crop' | 'pad' | 'squish') sizes each image"
)


# ---- randomness ---------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh CPU torch.Generator seeded from (seed, epoch) deterministically.

    The 64-bit seed is splitmix64(splitmix64(seed) ^ epoch): a bijective mix, so different
    epochs of one seed (and nearby seeds) get unrelated streams. Negative seeds are taken
    modulo 2**64; epoch must be >= 0.
    """
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed should be an int, got {type(seed).__name__} {seed!r}")
    seed = int(seed)
    check_int("epoch", epoch, 0)
    mixed = _splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64))
    generator = torch.Generator(device="cpu")
    generator.manual_seed(mixed)
    return generator


# ---- matrices -----------------------------------------------------------------------------
# Computed in numpy float64: a batch is a few hundred numbers, for which numpy's per-call cost
# is a fraction of torch's (random_params for 256 samples: 1-3 ms on 2 busy cores, against
# 15-150 ms with the same math as torch ops, whose small-tensor overhead dominates).

_CORNERS = np.array([[-1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])


def _affine(linear: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """[B, 2, 2] (+ [B, 2]) -> [B, 3, 3] homogeneous affine matrices."""
    mats = np.zeros((linear.shape[0], 3, 3))
    mats[:, :2, :2] = linear
    if translation is not None:
        mats[:, :2, 2] = translation
    mats[:, 2, 2] = 1
    return mats


def _crop_matrices(
    center_x: np.ndarray,
    center_y: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    in_hw: tuple[int, int],
) -> np.ndarray:
    """Boxes of the input (pixels: centre, size; each [B]) -> C [B, 3, 3].

    C maps output normalized coordinates onto the box in input normalized coordinates.
    """
    in_h, in_w = in_hw
    linear = np.zeros((center_x.shape[0], 2, 2))
    linear[:, 0, 0] = width / in_w
    linear[:, 1, 1] = height / in_h
    return _affine(linear, np.stack([2 * center_x / in_w - 1, 2 * center_y / in_h - 1], 1))


def _center_box(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[float, float]:
    """(height, width) in input pixels of the largest box with the output's aspect ratio."""
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    scale = max(out_h / in_h, out_w / in_w)  # output pixels per input pixel
    return min(out_h / scale, in_h), min(out_w / scale, in_w)


def center_crop_matrices(
    batch_size: int, in_hw: int | tuple[int, int], out_hw: int | tuple[int, int]
) -> Tensor:
    """The deterministic validation matrix: resize the short side, then centre crop.

    The input is scaled so that it just covers the output (by max(out_h/in_h, out_w/in_w)) and
    the centred box of the output's size is kept: the largest centred box of the input with the
    output's aspect ratio, stretched to the output. Equal aspect ratios give a plain resize.

    Returns float32 Tensor[batch_size, 3, 3] (CPU), output -> input normalized coordinates,
    all rows equal: [[box_w/in_w, 0, 0], [0, box_h/in_h, 0], [0, 0, 1]].
    """
    batch_size = check_int("batch_size", batch_size, 0)
    in_hw = check_hw("in_hw", in_hw)
    out_hw = check_hw("out_hw", out_hw)
    box_h, box_w = _center_box(in_hw, out_hw)
    matrix = np.diag([box_w / in_hw[1], box_h / in_hw[0], 1.0]).astype(np.float32)
    return torch.from_numpy(np.tile(matrix, (batch_size, 1, 1)))


def _random_crop(
    u: np.ndarray, spec: AugmentSpec, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> np.ndarray:
    """C [B, 3, 3]: the random-resized crop (or the centre crop when min_scale == 1)."""
    batch = u.shape[0]
    (in_h, in_w), (out_h, out_w) = in_hw, out_hw
    box_h, box_w = _center_box(in_hw, out_hw)
    center_x = np.full(batch, in_w / 2)
    center_y = np.full(batch, in_h / 2)
    width = np.full(batch, box_w)
    height = np.full(batch, box_h)
    if spec.min_scale < 1:
        draws = u[:, _RRC:].reshape(batch, RRC_ATTEMPTS, 4)
        area = (spec.min_scale + draws[..., 0] * (1 - spec.min_scale)) * (box_h * box_w)
        log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
        aspect = (out_w / out_h) * np.exp(log_lo + draws[..., 1] * (log_hi - log_lo))
        w = np.sqrt(area * aspect)
        h = np.sqrt(area / aspect)
        fits = (w <= in_w * (1 + 1e-12)) & (h <= in_h * (1 + 1e-12))
        first = fits.argmax(axis=1)[:, None]  # the first attempt that fits
        found = fits.any(axis=1)

        def pick(a: np.ndarray) -> np.ndarray:
            return np.take_along_axis(a, first, axis=1)[:, 0]

        w, h = np.minimum(pick(w), in_w), np.minimum(pick(h), in_h)
        left = pick(draws[..., 2]) * (in_w - w)
        top = pick(draws[..., 3]) * (in_h - h)
        center_x = np.where(found, left + w / 2, center_x)
        center_y = np.where(found, top + h / 2, center_y)
        width = np.where(found, w, width)
        height = np.where(found, h, height)
    return _crop_matrices(center_x, center_y, width, height, in_hw)


def _to_pixel_space(linear: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """A 2x2 map of pixel offsets [B, 2, 2] -> the same map in normalized coordinates.

    Normalized x = pixel offset / (w/2), y = pixel offset / (h/2): conjugate by
    diag(w/2, h/2), which scales the off-diagonal terms by h/w and w/h (as fastai's
    `_prepare_mat`).
    """
    out_h, out_w = out_hw
    result = linear.copy()
    result[:, 0, 1] *= out_h / out_w
    result[:, 1, 0] *= out_w / out_h
    return result


# The 8 dihedral symmetries as (x sign, y sign, swap axes), in fastai's order.
_DIHEDRAL_XS = np.array([1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
_DIHEDRAL_YS = np.array([1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
_DIHEDRAL_SWAP = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0])


def _flip(u: np.ndarray, spec: AugmentSpec, out_hw: tuple[int, int]) -> np.ndarray:
    """F [B, 3, 3]: horizontal flip (p=0.5), or a dihedral symmetry (p=0.5) when flip_vert."""
    apply = (u[:, _FLIP] < 0.5) & spec.do_flip
    if spec.flip_vert:
        k = np.minimum((u[:, _DIHEDRAL] * 8).astype(np.int64), 7) * apply
        xs, ys, swap = _DIHEDRAL_XS[k], _DIHEDRAL_YS[k], _DIHEDRAL_SWAP[k]
        linear = np.stack(
            [np.stack([xs * (1 - swap), xs * swap], 1), np.stack([ys * swap, ys * (1 - swap)], 1)],
            1,
        )
        return _affine(_to_pixel_space(linear, out_hw))
    linear = np.zeros((u.shape[0], 2, 2))
    linear[:, 0, 0] = np.where(apply, -1.0, 1.0)
    linear[:, 1, 1] = 1
    return _affine(linear)


def _rotation(u: np.ndarray, spec: AugmentSpec, out_hw: tuple[int, int]) -> np.ndarray:
    """R [B, 3, 3]: rotation in pixel space by +-max_rotate degrees (p=p_affine)."""
    apply = u[:, _ROT_P] < spec.p_affine
    theta = np.radians(np.where(apply, (2 * u[:, _ROT] - 1) * spec.max_rotate, 0.0))
    cos, sin = np.cos(theta), np.sin(theta)
    linear = np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1)
    return _affine(_to_pixel_space(linear, out_hw))


def _zoom(u: np.ndarray, spec: AugmentSpec) -> np.ndarray:
    """Z [B, 3, 3]: fastai's zoom by z in [min_zoom, max_zoom] (p=p_affine)."""
    apply = u[:, _ZOOM_P] < spec.p_affine
    zoom = spec.min_zoom + u[:, _ZOOM] * (spec.max_zoom - spec.min_zoom)
    scale = np.where(apply, 1 / zoom, 1.0)
    linear = scale[:, None, None] * np.eye(2)
    translation = (1 - scale)[:, None] * (2 * u[:, [_ZOOM_X, _ZOOM_Y]] - 1)
    return _affine(linear, translation)


def _warp(u: np.ndarray, spec: AugmentSpec) -> np.ndarray:
    """W [B, 3, 3]: fastai v2's `Warp`, the homography taking its moved corners to the square's.

    x_t, y_t are each uniform in [-max_warp, max_warp] with probability p_affine (else 0). As
    fastai's `_WarpCoord` (find_coeffs(orig_pts, targ_pts)), W maps (-1-y_t, -1-x_t) -> (-1, -1),
    (-1+y_t, 1+x_t) -> (-1, 1), (1+y_t, -1+x_t) -> (1, -1), (1-y_t, 1-x_t) -> (1, 1). Closed
    form instead of fastai's 8x8 solve: Heckbert's square-to-quad map Q, then W = adj(Q)
    scaled to W[2, 2] = 1. Exactly the identity where x_t = y_t = 0.
    """
    x_t = np.where(u[:, _WARP_PX] < spec.p_affine, (2 * u[:, _WARP_X] - 1) * spec.max_warp, 0.0)
    y_t = np.where(u[:, _WARP_PY] < spec.p_affine, (2 * u[:, _WARP_Y] - 1) * spec.max_warp, 0.0)
    # images of the unit square's corners (0,0), (1,0), (1,1), (0,1), i.e. of the [-1, 1]
    # square's (-1,-1), (1,-1), (1,1), (-1,1)
    x0, y0 = -1 - y_t, -1 - x_t
    x1, y1 = 1 + y_t, -1 + x_t
    x2, y2 = 1 - y_t, 1 - x_t
    x3, y3 = -1 + y_t, 1 + x_t
    sx, sy = x0 - x1 + x2 - x3, y0 - y1 + y2 - y3
    dx1, dx2, dy1, dy2 = x1 - x2, x3 - x2, y1 - y2, y3 - y2
    den = dx1 * dy2 - dx2 * dy1
    g = (sx * dy2 - dx2 * sy) / den
    h = (dx1 * sy - sx * dy1) / den
    unit_to_quad = np.stack(
        [
            np.stack([x1 - x0 + g * x1, x3 - x0 + h * x3, x0], -1),
            np.stack([y1 - y0 + g * y1, y3 - y0 + h * y3, y0], -1),
            np.stack([g, h, np.ones_like(g)], -1),
        ],
        1,
    )
    to_unit = np.array([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    quad = unit_to_quad @ to_unit  # [-1, 1] square -> moved corners
    c0, c1, c2 = quad[:, :, 0], quad[:, :, 1], quad[:, :, 2]
    adjugate = np.stack([np.cross(c1, c2), np.cross(c2, c0), np.cross(c0, c1)], 1)
    return adjugate / adjugate[:, 2:, 2:]


def _lighting(u: np.ndarray, spec: AugmentSpec) -> np.ndarray:
    """[B, 2] (brightness, contrast) as fastai v1 draws them (see AugmentSpec)."""
    ml = spec.max_lighting
    brightness = np.where(u[:, _BRIGHT_P] < spec.p_lighting, 0.5 + ml * (u[:, _BRIGHT] - 0.5), 0.5)
    log_lo = math.log(1 - ml)  # contrast in [1 - ml, 1 / (1 - ml)], log-uniform
    contrast = np.where(
        u[:, _CONTRAST_P] < spec.p_lighting, np.exp(log_lo - 2 * log_lo * u[:, _CONTRAST]), 1.0
    )
    return np.stack([brightness, contrast], 1)


def random_params(
    spec: AugmentSpec,
    batch_size: int,
    in_hw: int | tuple[int, int],
    out_hw: int | tuple[int, int],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:
    """Draw one augmentation per sample: matrices float32 [B, 3, 3] and lighting [B, 2] | None.

    in_hw: (height, width) of the input images; out_hw: of the output. Matrices map output
    normalized coordinates to input normalized coordinates (align_corners=False), composed as
    C @ W @ F @ R @ Z (module docstring); their last row is (0, 0, 1) unless the sample is
    warped. Lighting rows are (brightness, contrast), (0.5, 1.0) meaning unchanged; lighting
    is None when the spec cannot change lighting (max_lighting == 0 or p_lighting == 0).
    All on the CPU, drawn from `generator` with one torch.rand(batch_size, N) call; computed in
    float64 and rounded to float32 once.
    """
    if not isinstance(spec, AugmentSpec):
        raise TypeError(f"spec should be an AugmentSpec, got {type(spec).__name__}")
    batch_size = check_int("batch_size", batch_size, 0)
    in_hw = check_hw("in_hw", in_hw)
    out_hw = check_hw("out_hw", out_hw)
    generator = check_cpu_generator("generator", generator)

    u = torch.rand(batch_size, _N_DRAWS, generator=generator, dtype=torch.float64).numpy()
    augment = _flip(u, spec, out_hw) @ _rotation(u, spec, out_hw) @ _zoom(u, spec)
    if spec.max_warp > 0:
        warped = _warp(u, spec) @ augment
        w = warped[:, 2, :] @ _CORNERS.T  # (B, 4): w is affine in p, so the corners bound it
        augment = np.where((w.min(1, initial=np.inf) >= _MIN_W)[:, None, None], warped, augment)
    matrices = torch.from_numpy((_random_crop(u, spec, in_hw, out_hw) @ augment).astype(np.float32))
    lighting = (
        torch.from_numpy(_lighting(u, spec).astype(np.float32)) if spec.has_lighting else None
    )
    return matrices, lighting


# ---- the one call per batch ---------------------------------------------------------------


def augment_batch(
    images: Tensor,
    size: int | tuple[int, int] | None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    spec: AugmentSpec | None = None,
    generator: torch.Generator | None = None,
    train: bool = True,
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Tensor:
    """uint8 images [B, C, H, W] -> augmented, normalized [B, C, out_h, out_w] on images.device.

    train=True: per-sample parameters from `spec` (None: AugmentSpec(), fastai's defaults)
    drawn from `generator` (a CPU torch.Generator, e.g. epoch_generator(seed, epoch));
    train=False: `center_crop_matrices`, no lighting, no generator needed. size: the output
    (out_h, out_w) or an int for a square; None takes spec.size. The parameters move to
    images.device (non_blocking) and `ops.augment_normalize` does the rest in one pass with
    spec.mode and spec.pad_mode; mean/std are per channel in [0, 1] units.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images should be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images should be a 4D [B, C, H, W] tensor, got {images.dim()}D")
    train = check_bool("train", train)
    if spec is None:
        spec = AugmentSpec()
    elif not isinstance(spec, AugmentSpec):
        raise TypeError(
            f"spec should be an AugmentSpec or None (aug_transforms(...) returns a list: pass its "
            f"element), got {type(spec).__name__}"
        )
    if size is None:
        if spec.size is None:
            raise ValueError(
                "size should be given (an int or (height, width)) when spec.size is None"
            )
        out_hw = check_hw("spec.size", spec.size)
    else:
        out_hw = check_hw("size", size)
        if spec.size is not None and check_hw("spec.size", spec.size) != out_hw:
            raise ValueError(f"size {size!r} disagrees with spec.size {spec.size!r}")
    batch_size, in_hw = images.shape[0], (images.shape[2], images.shape[3])
    if in_hw[0] <= 0 or in_hw[1] <= 0:
        raise ValueError(f"images should have positive height and width, got {tuple(images.shape)}")
    if train:
        if generator is None:
            raise ValueError(
                "generator is required when train=True: pass a CPU torch.Generator, "
                "e.g. epoch_generator(seed, epoch)"
            )
        matrices, lighting = random_params(spec, batch_size, in_hw, out_hw, generator)
    else:
        matrices, lighting = center_crop_matrices(batch_size, in_hw, out_hw), None

    from fastcore_ext import ops  # the kernel; imported here so the parameters need no build

    device = images.device
    if device.type == "cuda":
        matrices = matrices.pin_memory()
        lighting = lighting.pin_memory() if lighting is not None else None
    matrices = matrices.to(device, non_blocking=True)
    lighting = lighting.to(device, non_blocking=True) if lighting is not None else None
    return ops.augment_normalize(
        images,
        matrices,
        out_hw,
        mean=mean,
        std=std,
        lighting=lighting,
        mode=spec.mode,
        pad_mode=spec.pad_mode,
        out_dtype=out_dtype,
        channels_last=channels_last,
    )
