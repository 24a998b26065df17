"""The bunch: train and validation data ready for a Learner, in fastai's two spellings.

``ImageDataBunch`` (fastai v1) and ``ImageDataLoaders`` (fastai v2) are one class: the second
is a subclass that differs where fastai v1 and v2 differ (what from_name_re / from_name_func
read, how valid_pct splits, which RNG draws a seed). Both accept both ways of saying what the
pipeline is:

v1: ``ds_tfms=get_transforms()`` (an `AugmentSpec`, or None for no random augmentation),
``size=224``, then ``.normalize(imagenet_stats)``.
v2: ``item_tfms=Resize(460)`` (the presize), ``batch_tfms=[*aug_transforms(size=224),
Normalize.from_stats(*imagenet_stats)]``.

Defaults (decided here): size = explicit `size`, else the AugmentSpec's size, else the
Resize size, else the images' own: when every image is a square of one size (read from the
file headers, no pixel decoded), that size, unchanged (presize = size; fastai too keeps each
image's size without a Resize: 28 x 28 MNIST digits stay 28 x 28). Otherwise (sizes differ,
or the images are not square) 224, with a warning naming two sizes found and how to choose
(``item_tfms=Resize(n)``, ``size=n``): fastai cannot batch images of different sizes, this
library presizes and crops them to that default. presize = the Resize size, else
``round(1.25 * size)``.
Augmentation only where asked for: ``ds_tfms=get_transforms()`` (fastai v1's default is
None: none) or an AugmentSpec in `batch_tfms` (as fastai v2). Without
normalization batches are [0, 1] floats (mean 0, std 1).

Presizing (method 'crop', the default): every image is resized so its short side is the
presize, aspect kept; the training set takes a square window of side presize at a random
position along the long side, fresh every epoch, the validation set (and predict, get_preds,
TTA's plain pass) the centre one, as fastai v2's ``Resize`` (v1: ``rand_crop`` on the training
set). Batch augmentation then works from that square. Method 'squish' resizes the whole image
to the square (no window to choose); 'pad' (``Resize(n, ResizeMethod.Pad, pad_mode='zeros')``)
resizes its long side to the square and pads the rest, the image at a random place of the
square on the training set (fresh every epoch), centred elsewhere. ``item_tfms=RandomResizedCrop(n,
min_scale)`` presizes as 'crop' and has the batch kernel draw a random-resized crop of the
square on the training set (its docstring says how that differs from fastai's).

cache=True keeps the whole presized images in a memory map under
``<FASTCORE_EXT_HOME>/cache`` (cache=<folder> puts it there instead): the first pass decodes,
later passes and later runs cut their windows from the map (see cache.py).

decode_device: where JPEG files are decoded while they are not cached. None (default): on the
GPU when the batches go to one and TorchCodec decodes JPEG there (nvJPEG), else on the CPU;
'cpu'; 'cuda' (an error when it cannot). On the GPU the workers only read the files (and
decode what is not JPEG); the JPEGs of a batch are decoded in one call and presized there
(device_decode.py). Pixels differ slightly from the CPU's (nvJPEG's IDCT and chroma
upsampling; tests/test_data_device_decode.py gives the tolerance).

Random split (valid_pct): fastai's for the same items and seed. ImageDataLoaders (v2)
splits as ``RandomSplitter(valid_pct, seed)``, as fastai v2's from_* do (a torch permutation;
train and validation sets both in the permutation's order); ImageDataBunch (v1) as fastai
v1's ``split_by_rand_pct(valid_pct, seed)`` (a numpy permutation after ``np.random.seed(seed)``;
the validation set in its order, the training set ascending). Items are in the source's
order: the list given (fnames, the rows of a CSV or DataFrame), or the sorted files under
`path` (fastai lists them in the file system's order, which differs between machines).

Seeds: `seed=None` draws one int at construction from numpy's global RNG for
`ImageDataBunch` (fastai v1's split: the lesson's ``np.random.seed(2)`` makes runs
reproducible) and from torch's for `ImageDataLoaders` (fastai v2's: ``torch.manual_seed``);
the split, the shuffle of each epoch and the augmentation of each epoch derive from it.
Several processes must agree on it, so an unchanged single-process script trains under
torchrun: every process draws, and rank 0's draw is the seed: broadcast when a process group
of several processes exists, else, in a process torchrun started, passed through the store
torchrun's agent keeps for its workers (`ranks.from_launch_rank_0`). So a script that seeds
its RNG (``np.random.seed(2)``) splits the same under torchrun as in one process, at every
launch. (A torchrun without that store: the seed is derived from the run id, the same in
every worker, and the number of bunches this process built without a seed before.) Processes
started otherwise
(RANK and WORLD_SIZE set by another launcher, no group yet) draw their own seeds, which the
Learner's distributed check refuses: pass seed= there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image as PILImageModule

from fastcore_ext import augment
from fastcore_ext.checks import check_bool, check_int, check_positive_int, short_repr
from fastcore_ext.foundation import L
from fastcore_ext.plots import PlotFigure, check_figsize, keep_out_of
from fastcore_ext.ranks import from_launch_rank_0
from fastcore_ext.warn import warn_user

from .cache import DecodedCache
from .device_decode import JpegBatchDecoder, resolve_decode_device
from .images import (
    PAD_MODES,
    BadImageError,
    ImageSource,
    file_image_size,
    find_bad_images,
    load_image,
    resize_method,
    to_rgb,
)
from .items import (
    ItemSplit,
    RegexLabeller,
    _check_seed,
    check_files_exist,
    check_fnames,
    check_label_delim,
    check_path,
    get_image_files,
    items_from_folder,
    items_from_lists,
    items_from_name_func,
    items_from_name_re,
    items_from_table,
    labels_of,
    parent_label,
    read_labels_csv,
    read_valid_csv,
    shown_names,
    using_attr,
    valid_flags,
)
from .loader import DeviceDataLoader, ImageDataset, denormalize
from .paths import DataPath

__all__ = [
    "CategoryMap",
    "DatasetType",
    "LoaderPair",
    "ImageDataBunch",
    "ImageDataLoaders",
    "IntToFloatTensor",
    "Normalize",
    "PadMode",
    "RandomResizedCrop",
    "Resize",
    "ResizeMethod",
    "ToTensor",
    "imagenet_stats",
    "cifar_stats",
    "mnist_stats",
]

Stats = tuple[Sequence[float], Sequence[float]]

imagenet_stats: Stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
"""(mean, std) of ImageNet per RGB channel, in [0, 1] units."""
cifar_stats: Stats = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
"""(mean, std) of CIFAR-10 per RGB channel (fastai's values)."""
mnist_stats: Stats = ([0.131, 0.131, 0.131], [0.308, 0.308, 0.308])
"""(mean, std) of MNIST, the same for the three channels (fastai's values)."""


class DatasetType(str, Enum):
    """fastai v1's names of the data sets, for `ds_type=` (get_preds, validate, tta,
    ClassificationInterpretation.from_learner, show_batch, one_batch): each equals the string
    this library takes ('train', 'valid'). Test names v1's unlabelled test set, which this
    library does not keep: get_preds says what to do instead. Fix (get_preds, validate): the
    training set in order through the validation transform (no shuffle, no augmentation), as
    v1's. v1's Single has no counterpart."""

    Train = "train"
    Valid = "valid"
    Test = "test"
    Fix = "fix"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class ResizeMethod(str, Enum):
    """fastai v2's resize methods for `Resize` (each equals its string, as fastai's)."""

    Crop = "crop"
    Squish = "squish"
    Pad = "pad"
    CROP, SQUISH, PAD = "crop", "squish", "pad"  # fastai v1's names (aliases)

    def __str__(self) -> str:
        return self.value


class PadMode(str, Enum):
    """fastai v2's padding modes for ``Resize(..., method='pad', pad_mode=...)``."""

    Zeros = "zeros"
    Reflection = "reflection"
    Border = "border"

    def __str__(self) -> str:
        return self.value


class Resize:
    """v2 item transform: presize every image to `size` x `size`.

    method 'crop': resize the short side to `size`, then cut a square along the long side, at
    a random position on the training set (fresh each epoch, from the data seed) and at the
    centre elsewhere, as fastai v2's ``Resize``; 'squish': resize the whole image, ignoring
    its aspect ratio; 'pad': resize the long side to `size` and pad the short side to it with
    `pad_mode` ('reflection', fastai's default, 'zeros' or 'border'), the image at a random
    place along the padded side on the training set (fresh each epoch, from the data seed:
    fastai's random ``pcts``) and centred elsewhere (fastai's pcts 0.5), as fastai v2's.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        method: str = ResizeMethod.Crop,
        pad_mode: str = PadMode.Reflection,
    ) -> None:
        size = _as_square(size, "size")
        self.presize_method = resize_method(str(method), str(pad_mode))
        self.size, self.method, self.pad_mode = size, str(method), str(pad_mode)

    @property
    def presize(self) -> int:
        """The side every image is presized to: `size` itself."""
        return self.size

    def __repr__(self) -> str:
        pad = f", pad_mode={self.pad_mode!r}" if self.method == "pad" else ""
        return f"Resize({self.size}, method={self.method!r}{pad})"


class RandomResizedCrop:
    """v2 item transform ``RandomResizedCrop(size, min_scale=0.08, ratio=(3/4, 4/3))``, mapped
    onto this library's pipeline of presize + fused batch kernel.

    What it does here: every image is presized as ``Resize(presize)`` (method 'crop': short
    side to `presize`, a square window at a random position along the long side on the
    training set, the centre one elsewhere), with ``presize = min(2 * size,
    ceil(size / sqrt(min_scale)))`` (at least `size`: the smallest crop is then not enlarged
    unless min_scale < 1/4). The training batches then take, in the batch kernel, a
    random-resized crop of that square: area a fraction uniform in [min_scale, 1] of the
    square, aspect ratio log-uniform in `ratio`, position uniform, 10 tries then the whole
    square (`AugmentSpec.min_scale` / `ratio`), resized to `size`. The validation set (and
    predict, get_preds) takes the centre square resized to `size`.

    How it differs from fastai's: fastai draws the crop from the whole original image (its
    area a fraction of the whole image's, anywhere in it) at full resolution; here it is drawn
    from a square window of the image presized to `presize`, so on a non-square image a crop
    never spans more than the short side, and a small crop has at most the presize's
    resolution. fastai's validation squishes the whole image to ``size + xtra`` (xtra =
    ``ceil(size * 0.14 / 8) * 8``) and takes the centre `size` square; here it is the centre
    square of the image (aspect kept), without the extra margin. max_scale, val_xtra and
    resamples are not offered.

    With ``batch_tfms=aug_transforms(...)``: the spec's other augmentations (flip, rotation,
    zoom, warp, lighting) apply as well, and this crop's min_scale and ratio replace the
    spec's (fastai applies both crops one after the other; a warning says so when the spec
    had its own min_scale < 1).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        min_scale: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.size = _as_square(size, "size")
        if isinstance(min_scale, bool) or not isinstance(min_scale, Real):
            raise TypeError(f"min_scale: expected a float in (0, 1], got {min_scale!r}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale: expected a float in (0, 1], got {min_scale!r}")
        # the AugmentSpec checks ratio the way the kernel needs it
        self.crop = augment.AugmentSpec(
            do_flip=False, max_rotate=0.0, max_zoom=1.0, max_lighting=0.0, max_warp=0.0,
            min_scale=float(min_scale), ratio=ratio,
        )  # fmt: skip
        self.min_scale, self.ratio = self.crop.min_scale, self.crop.ratio
        self.presize_method = "crop"
        fine = math.ceil(self.size / math.sqrt(min_scale))  # the smallest crop not enlarged
        self.presize = max(self.size, min(2 * self.size, fine))

    def augment_with(self, spec: augment.AugmentSpec | None) -> augment.AugmentSpec:
        """The training batches' AugmentSpec: `spec` (aug_transforms) with this crop's
        min_scale and ratio, or the crop alone."""
        if spec is None:
            return self.crop
        if spec.min_scale < 1:
            warn_user(
                f"item_tfms: RandomResizedCrop(min_scale={self.min_scale}) replaces the "
                f"batch_tfms' random-resized crop (min_scale={spec.min_scale}); fastai "
                "applies both, this library draws one crop per image"
            )
        return dataclasses.replace(spec, min_scale=self.min_scale, ratio=self.ratio)

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop({self.size}, min_scale={self.min_scale}, ratio={self.ratio}; "
            f"presize {self.presize})"
        )


class Normalize:
    """v2 batch transform: normalize with per-channel (mean, std) in [0, 1] units;
    ``Normalize()`` (neither given) measures them on one batch when the data is built, as
    fastai's (here a validation batch, deterministic: `ImageDataBunch.normalize()`)."""

    def __init__(
        self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
    ) -> None:
        if mean is None and std is None:
            self.mean = self.std = None
        elif mean is None or std is None:
            raise TypeError(
                f"Normalize: give both mean and std, or neither (measured on a batch), got "
                f"mean={mean!r}, std={std!r}"
            )
        else:
            self.mean, self.std = _check_stats((mean, std))

    @classmethod
    def from_stats(
        cls,
        mean: Sequence[float],
        std: Sequence[float],
        dim: int = 1,
        ndim: int = 4,
        cuda: bool = True,
    ) -> Normalize:
        """fastai's spelling: ``Normalize.from_stats(*imagenet_stats)``. fastai's dim=1 and
        ndim=4 (the channel axis of a batch) are the only layout here; cuda is accepted and
        not needed (the statistics go where the batch is)."""
        if (dim, ndim) != (1, 4):
            raise ValueError(
                f"dim, ndim: expected fastai's 1, 4 (statistics per channel of an image "
                f"batch), got {dim!r}, {ndim!r}"
            )
        check_bool("cuda", cuda)
        return cls(mean, std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class ToTensor:
    """fastai v2's ``ToTensor()`` item transform, which fastai adds to every pipeline: images
    become uint8 tensors here too, always; listing it in item_tfms is accepted and changes
    nothing."""

    def __repr__(self) -> str:
        return "ToTensor()"


class IntToFloatTensor:
    """fastai v2's ``IntToFloatTensor(div=255.0)`` batch transform, which fastai adds to every
    pipeline: pixels become floats in [0, 1] here too, always (inside the fused kernel);
    listing it in batch_tfms is accepted and changes nothing. Another div is refused."""

    def __init__(self, div: float = 255.0, div_mask: int = 1) -> None:
        if div != 255.0:
            raise ValueError(
                f"div: pixels are divided by 255 (uint8 images to [0, 1]), got div={div!r}"
            )
        if div_mask != 1:
            raise ValueError(f"div_mask: there are no masks here (fastai's 1), got {div_mask!r}")
        self.div, self.div_mask = div, div_mask

    def __repr__(self) -> str:
        return "IntToFloatTensor()"


# The smallest std `_check_stats` takes: pixels in [0, 1] minus a mean in [0, 1], divided by
# it, stay within +-1000 (a std of 1e-30 turned every input infinite).
_STD_MIN = 1e-3


def _check_stats(stats: object) -> tuple[list[float], list[float]]:
    """(mean, std) per RGB channel in [0, 1] pixel units, checked: finite, each mean in
    [0, 1], each std in [1e-3, 1]."""
    try:
        mean, std = stats  # type: ignore[misc]
        mean, std = [float(m) for m in mean], [float(s) for s in std]
    except (TypeError, ValueError) as e:
        raise TypeError(f"stats: expected (mean, std) sequences of 3 floats, got {stats!r}") from e
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"stats: expected 3 means and 3 stds (RGB), got {stats!r}")
    if not all(math.isfinite(v) for v in (*mean, *std)):
        raise ValueError(f"stats: expected finite means and stds, got mean {mean}, std {std}")
    if any(not s > 0 for s in std):
        raise ValueError(f"stats: expected every std > 0, got {std}")
    units = "in [0, 1] units, as imagenet_stats (stats of 0-255 pixels: divide them by 255)"
    if any(not 0.0 <= m <= 1.0 for m in mean):
        raise ValueError(
            f"stats: expected every mean in [0, 1] (the mean of pixels in [0, 1]), {units}; "
            f"got mean {mean}"
        )
    if any(not _STD_MIN <= s <= 1.0 for s in std):
        raise ValueError(
            f"stats: expected every std in [{_STD_MIN:g}, 1] (a smaller std makes a normalized "
            f"pixel larger than {1 / _STD_MIN:g}), {units}; got std {std}"
        )
    return mean, std


@dataclass(frozen=True)
class _Pipeline:
    size: int | None  # None: the images' own (`_sized`)
    presize: int | None
    method: str
    spec: object | None
    stats: tuple[list[float], list[float]] | None


_UNSET = object()
MEASURED = ([], [])  # a pipeline's stats from Normalize(): measured on a batch (normalize())

Labeller = Callable[[Path], object]


def _one_or_list(x: object) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]


def _as_square(size: object, arg: str) -> int:
    if isinstance(size, tuple | list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise ValueError(f"{arg}: expected a positive int (square images), got {size!r}")
    return int(size)


def _resolve_pipeline(
    ds_tfms: object,
    size: int | None,
    item_tfms: object,
    batch_tfms: object,
    v1_resize: str | None = None,
    padding_mode: str | None = None,
) -> _Pipeline:
    """The pipeline the arguments of a from_* method describe: fastai v1's ds_tfms, size,
    resize_method (`v1_resize`) and padding_mode, or v2's item_tfms and batch_tfms."""
    if ds_tfms is not _UNSET and (item_tfms is not None or batch_tfms is not None):
        raise ValueError(
            "ds_tfms: fastai v1's ds_tfms cannot be mixed with v2's item_tfms/batch_tfms; "
            f"got ds_tfms={ds_tfms!r}, item_tfms={item_tfms!r}, batch_tfms={batch_tfms!r}"
        )
    spec = None  # ds_tfms left out: no augmentation, as fastai v1's ds_tfms=None
    if ds_tfms is not _UNSET and ds_tfms is not None:
        specs = _one_or_list(ds_tfms)
        if len(specs) == 2 and specs[1] in (None, [], ()):  # v1's (train_tfms, valid_tfms)
            specs = specs[:1]
        if len(specs) != 1 or not isinstance(specs[0], augment.AugmentSpec):
            raise TypeError(
                "ds_tfms: expected an AugmentSpec (get_transforms()), or the pair (tfms[0], []) "
                f"(the validation set is never augmented), got {ds_tfms!r}"
            )
        spec = specs[0]
    if (v1_resize is not None or padding_mode is not None) and item_tfms is not None:
        raise ValueError(
            "resize_method / padding_mode: fastai v1's resize arguments cannot be mixed with "
            "v2's item_tfms (Resize(n, method, pad_mode) takes both); got "
            f"resize_method={v1_resize!r}, padding_mode={padding_mode!r}, item_tfms={item_tfms!r}"
        )
    if padding_mode is not None:
        padding_mode = str(padding_mode)
        if padding_mode not in PAD_MODES:
            raise ValueError(f"padding_mode: expected one of {PAD_MODES}, got {padding_mode!r}")
        if spec is not None:  # v1's padding_mode pads the affine augmentation too
            spec = dataclasses.replace(spec, pad_mode=padding_mode)

    stats = None
    if batch_tfms is not None:
        for t in _one_or_list(batch_tfms):
            if isinstance(t, IntToFloatTensor):
                continue  # always done
            if isinstance(t, Normalize) and stats is None:
                stats = MEASURED if t.mean is None else (t.mean, t.std)
                continue
            if isinstance(t, augment.AugmentSpec) and spec is None:
                spec = t
            else:
                raise TypeError(
                    "batch_tfms: expected at most one AugmentSpec (aug_transforms()) and one "
                    f"Normalize, got {batch_tfms!r}"
                )

    resize = None
    if item_tfms is not None:
        given = _one_or_list(item_tfms)
        ts = [t for t in given if not isinstance(t, ToTensor)]  # always done
        if (
            not given
            or len(ts) > 1
            or not all(isinstance(t, Resize | RandomResizedCrop) for t in ts)
        ):
            raise TypeError(
                f"item_tfms: expected one Resize(n) or RandomResizedCrop(n), got {item_tfms!r}"
            )
        resize = ts[0] if ts else None
    if isinstance(resize, RandomResizedCrop):
        spec = resize.augment_with(spec)

    spec_size = getattr(spec, "size", None)
    if size is not None:
        size = _as_square(size, "size")
        if spec_size is not None and _as_square(spec_size, "aug_transforms(size=...)") != size:
            raise ValueError(f"size: {size} contradicts the AugmentSpec's size {spec_size!r}")
    elif spec_size is not None:
        size = _as_square(spec_size, "aug_transforms(size=...)")
    elif resize is not None:
        size = resize.size
    else:  # nothing says: the images' own size (`_sized`)
        return _Pipeline(None, None, _v1_method(v1_resize, padding_mode), spec, stats)
    if resize is not None:
        presize, method = resize.presize, resize.presize_method
    else:
        presize, method = round(1.25 * size), _v1_method(v1_resize, padding_mode)
    return _Pipeline(size, presize, method, spec, stats)


def _v1_method(v1_resize: str | None, padding_mode: str | None) -> str:
    """The presize method of fastai v1's ``resize_method`` (ResizeMethod.CROP, the default;
    SQUISH; PAD, padded with `padding_mode`, 'reflection' by default, as v1's)."""
    method = "crop" if v1_resize is None else str(v1_resize).lower()
    if method not in ("crop", "squish", "pad"):
        raise ValueError(
            "resize_method: expected ResizeMethod.CROP, SQUISH or PAD ('crop', 'squish', "
            f"'pad'), got {v1_resize!r}"
        )
    return resize_method(method, "reflection" if padding_mode is None else padding_mode)


# the size when nothing chooses one and the images have no single square size
DEFAULT_SIZE = 224


def _sized(pipeline: _Pipeline, items: Sequence[Path]) -> _Pipeline:
    """`pipeline` with a size: its own, or, when nothing chose one (no size, no Resize, no
    AugmentSpec size), the images' own side when every image whose header can be read is a
    square of one size (read from the headers, no pixel decoded; the first other size ends
    the reading), else `DEFAULT_SIZE` presized from ``round(1.25 * size)`` with a warning
    naming two of the sizes found and how to choose one."""
    if pipeline.size is not None:
        return pipeline
    found: dict[tuple[int, int], Path] = {}
    for p in items:
        wh = file_image_size(p)
        if wh is not None and wh not in found:
            found[wh] = p
            if len(found) > 1 or wh[0] != wh[1]:
                break
    if len(found) == 1:
        ((w, h),) = found
        if w == h:
            return dataclasses.replace(pipeline, size=w, presize=w)
    size = DEFAULT_SIZE
    if found:
        shown = " and ".join(f"{w} x {h} ({p.name})" for (w, h), p in itertools.islice(
            found.items(), 2))  # fmt: skip
        warn_user(
            f"size: no size chosen (item_tfms=Resize(n), size=n or aug_transforms(size=n)) "
            f"and the images are not squares of one size ({shown}), so each is presized to "
            f"{round(1.25 * size)} px and cropped to {size} x {size}, this library's default. "
            "fastai keeps each image's own size, and fails to batch images of different "
            "sizes; choose one with item_tfms=Resize(n) (fastai v2) or size=n (v1)"
        )
    return dataclasses.replace(pipeline, size=size, presize=round(1.25 * size))


def _resolve_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device: expected a torch device or name, got {device!r}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device} requested but torch.cuda.is_available() is False")
    return device


_unseeded = itertools.count()  # bunches built without a seed in this process (torchrun)


def _shared_seed(rng: str = "torch") -> int:
    """A data seed drawn from torch's global RNG (rng 'torch', fastai v2) or numpy's
    ('numpy', fastai v1, whose lesson seeds the split with np.random.seed(2)), which every
    process of a distributed run agrees on: rank 0's draw (see the module doc). So a script
    that seeds its RNG splits alike in one process and under torchrun."""
    drawn = int(
        np.random.randint(0, 2**31 - 1) if rng == "numpy" else torch.randint(0, 2**31 - 1, ())
    )
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [drawn]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]
    n = next(_unseeded)
    agreed = from_launch_rank_0(f"data_seed/{n}", str(drawn))
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if agreed is not None or not run_id:  # one process, or another launcher: its own draw
        return drawn if agreed is None else int(agreed)
    # torchrun without its agent store: a seed derived from the run id, the same everywhere
    digest = hashlib.sha256(f"{run_id}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**31 - 1)


def _resolve_seed(seed: int | None, rng: str = "torch") -> int:
    if seed is None:
        return _shared_seed(rng)
    return _check_seed(seed, "a non-negative int or None")


def _drop_bad(split: ItemSplit, num_workers: int | None) -> tuple[ItemSplit, list[Path]]:
    """(the split without its unreadable files, those files sorted)."""
    bad = set(find_bad_images(split.train_items + split.valid_items, num_workers))
    if not bad:
        return split, []
    warn_user(f"skip_bad: dropped {len(bad)} unreadable image(s): {shown_names(sorted(bad))}")

    def keep(items, labels):
        pairs = [(p, y) for p, y in zip(items, labels, strict=True) if p not in bad]
        return [p for p, _ in pairs], [y for _, y in pairs]

    ti, tl = keep(split.train_items, split.train_labels)
    vi, vl = keep(split.valid_items, split.valid_labels)
    if not ti or (split.valid_items and not vi):
        raise ValueError(
            f"skip_bad: no readable images left in the {'training' if not ti else 'validation'} set"
        )
    lost = [c for k, c in enumerate(split.classes) if k in split.train_labels and k not in tl]
    if lost:
        warn_user(
            f"skip_bad: {len(lost)} class(es) have no readable training image left, so the "
            f"model cannot learn them: {', '.join(map(repr, lost[:10]))}"
            f"{' ...' if len(lost) > 10 else ''}. They stay classes (the data's classes "
            "are what the folders and labels name); replace their images or leave them out"
        )
    return ItemSplit(ti, tl, vi, vl, split.classes), sorted(bad)


def _df_columns(df: object, **cols: int | str) -> list[list]:
    """Columns of a pandas DataFrame as lists, each by position or name (the keyword's name
    is the argument an error names: fn_col=..., label_col=...)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(
            "from_df needs pandas, an optional dependency: pip install pandas "
            "(from_csv reads a CSV file without it)"
        ) from e
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
    columns = []
    for name, col in cols.items():
        if isinstance(col, str):
            if col not in df.columns:
                raise ValueError(f"{name}: expected one of the columns {list(df.columns)}, "
                                 f"got {col!r}")  # fmt: skip
            columns.append(df[col].tolist())
        elif (
            isinstance(col, int) and not isinstance(col, bool) and -df.shape[1] <= col < df.shape[1]
        ):
            columns.append(df.iloc[:, col].tolist())
        else:
            raise ValueError(
                f"{name}: expected a column name or a position below {df.shape[1]}, got {col!r}"
            )
    return columns


def check_test_items(test_items: object) -> list[Any]:
    """`test_dl`'s images: a list of existing image files (str or Path, as Paths), PIL images,
    arrays or tensors (fastbook ch. 18's ``dls.test_dl([img])``; each checked to convert to
    RGB pixels, `images.to_rgb`); a DataFrame, a single path, a missing file, another object
    or an empty list is an error saying what to pass."""
    if hasattr(test_items, "columns") and hasattr(test_items, "iloc"):  # a DataFrame
        raise TypeError(
            "test_items: expected a list of image files, got a DataFrame (iterating it "
            "gives its column names); pass its file paths, e.g. "
            "[path/folder/f for f in df['fname']]"
        )
    if isinstance(test_items, str | os.PathLike) or not isinstance(test_items, Iterable):
        raise TypeError(
            f"test_items: expected a list of image files (get_image_files(path) makes one), "
            f"got {test_items!r}"
        )
    items = list(test_items)
    for k, f in enumerate(items):
        if isinstance(f, str | os.PathLike):
            items[k] = Path(f)
        elif isinstance(f, PILImageModule.Image | np.ndarray | torch.Tensor):
            try:
                to_rgb(f)
            except (TypeError, ValueError) as e:
                raise TypeError(f"test_items: the image at position {k} cannot be read: {e}") from e
        else:
            raise TypeError(
                f"test_items: expected image files (str or Path), PIL images, arrays or "
                f"tensors, got {type(f).__name__} at position {k}"
            )
    if not items:
        raise ValueError("test_items: expected at least one image file, got an empty list")
    check_files_exist([f for f in items if isinstance(f, Path)], "test_items")
    return items


def check_test_images(items: list[Path], num_workers: int = 0) -> None:
    """Decode every file once: an unreadable one is a BadImageError naming it (a loader
    skips unreadable images, so get_preds' rows would no longer line up with the files)."""
    bad = find_bad_images(items, num_workers)
    if bad:
        raise BadImageError(
            f"test_items: {len(bad)} of {len(items)} files cannot be decoded as images "
            f"({shown_names(bad, 3)}): get_preds would have no row for them; leave them out "
            "(verify_images(files) lists them; delete=True removes them)"
        )


def images_of_test_folder(
    folder: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[Path]:
    """The image files under `folder` (under `root` when given: a from_* method's path),
    fastai v1's ``test=`` folder, searched recursively as its add_test_folder does; or an
    error naming `test` and the folder."""
    if not isinstance(folder, str | os.PathLike):
        raise TypeError(f"test: expected the name of a folder of images, got {folder!r}")
    if root is not None:
        folder = Path(root) / folder
    if not Path(folder).is_dir():
        what = "is a file" if Path(folder).exists() else "does not exist"
        raise ValueError(f"test: expected a folder of unlabelled images, {folder} {what}")
    files = get_image_files(folder)
    if not files:
        raise ValueError(f"test: the folder {folder} holds no image file")
    return list(files)


def _suff_as_suffix(kwargs: dict[str, Any]) -> dict[str, Any]:
    """fastai v2's `suff` as v1's `suffix` (the bunch's name); both given: a ValueError."""
    kwargs = dict(kwargs)
    suff = kwargs.pop("suff", "")
    if suff and kwargs.get("suffix"):
        raise ValueError(
            f"suff / suffix: give one file suffix, got {suff!r} and {kwargs['suffix']!r}"
        )
    if suff:
        kwargs["suffix"] = suff
    return kwargs


def _regex_labeller(pat: str | re.Pattern[str], label_from: str) -> Labeller | None:
    """The label of a file by `pat`, searched in its path (label_from 'path') or its name; None
    for a pattern that is not a regular expression with a group (the items source names it)."""
    try:
        rx = RegexLabeller(pat)
    except ValueError:
        return None
    return rx if label_from == "path" else using_attr(rx, "name")


def _func_labeller(label_func: Callable[[Any], object], label_from: str) -> Labeller | None:
    """The label of a file by `label_func` of its path (label_from 'path') or its name."""
    if not callable(label_func):
        return None  # the items source names it
    return label_func if label_from == "path" else using_attr(label_func, "name")


class CategoryMap(list):
    """fastai v2's vocab: the class names, a list (index -> name, as everywhere a list of
    classes is taken), with ``o2i``, the dict name -> index."""

    @property
    def o2i(self) -> dict[str, int]:
        """{class name: its index}."""
        return {c: i for i, c in enumerate(self)}

    def __getitem__(self, idx: Any) -> Any:
        """A name by an int (a one-element tensor / array too), a slice as a list, and as
        fastai's, the names of several indices: ``vocab[preds.argmax(1)]``, ``vocab[[0, 2]]``
        (an L)."""
        if isinstance(idx, torch.Tensor | np.ndarray) and idx.ndim > 0:
            idx = idx.tolist()
        if isinstance(idx, list | tuple):
            return L(list.__getitem__(self, operator.index(i)) for i in idx)
        if isinstance(idx, torch.Tensor | np.ndarray | np.integer):
            idx = operator.index(idx.item() if hasattr(idx, "item") else idx)
        return list.__getitem__(self, idx)


def _check_y_block(y_block: object) -> None:
    """fastai v2's `y_block` of from_df / from_csv / from_lists: None or CategoryBlock (the
    class or an instance; told by name, as data.block, which defines it, imports this
    module); another block is refused, naming it."""
    if y_block is None:
        return
    kind = y_block if isinstance(y_block, type) else type(y_block)
    if kind.__name__ != "CategoryBlock":
        name = getattr(y_block, "__name__", kind.__name__)  # a block function's own name
        raise ValueError(
            f"y_block: only CategoryBlock is supported (single-label classification), got {name}"
        )


def _check_keywords(method: str, given: dict[str, Any], target: Callable[..., Any]) -> None:
    """A TypeError naming `method` (the one the user called) for a keyword of `given` that
    `target`, which receives them, does not take (Python's own message would name `target`)."""
    known = inspect.signature(target).parameters
    unknown = [k for k in given if k not in known]
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")


def _with_vocab(split: ItemSplit, vocab: Sequence[object], arg: str, sort: bool) -> ItemSplit:
    """`split` with `vocab` as its classes, sorted when `sort` (fastai v2's
    from_folder(vocab=) sorts them, as its CategoryBlock(vocab=) does; fastai v1's
    from_folder(classes=) keeps their order). `arg` is the argument errors name; a label
    outside them is a ValueError naming a few."""
    if isinstance(vocab, str) or not isinstance(vocab, Iterable):
        raise TypeError(f"{arg}: expected a list of class names, got {vocab!r}")
    names = [str(v) for v in vocab]
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"{arg}: expected at least 2 distinct class names, got {names}")
    if sort:
        names.sort()
    index = {c: i for i, c in enumerate(names)}
    outside = [c for c in split.classes if c not in index]  # the labels of the images found
    if outside:
        raise ValueError(
            f"{arg}: the labels {shown_names(outside)} of the images are not in the {arg} "
            f"given {shown_names(names, 20)}"
        )

    def remap(labels: list[int]) -> list[int]:
        return [index[split.classes[y]] for y in labels]

    return ItemSplit(
        split.train_items, remap(split.train_labels), split.valid_items,
        remap(split.valid_labels), names,
    )  # fmt: skip


class LoaderPair:
    """fastai v2's access to the two loaders `train_dl` and `valid_dl` of a bunch (an
    ImageDataBunch, DataLoaders): ``dls.train``, ``dls.valid``, ``dls[0]``, ``dls[1]``,
    ``dls.loaders``; ``dls.n_inp`` (1: a batch is one input and its target)."""

    train_dl: Any
    valid_dl: Any
    n_inp = 1

    @property
    def loaders(self) -> list[Any]:
        """fastai v2's ``dls.loaders``: [the training loader, the validation one]."""
        return [self.train_dl, self.valid_dl]

    @property
    def train(self) -> Any:
        """fastai v2's name for `train_dl`."""
        return self.train_dl

    @property
    def valid(self) -> Any:
        """fastai v2's name for `valid_dl`."""
        return self.valid_dl

    def __len__(self) -> int:
        """fastai v2's ``len(dls)``: 2, the training and the validation loader."""
        return 2

    def __getitem__(self, i: int) -> Any:
        """fastai v2's ``dls[0]`` (the training loader) and ``dls[1]`` (the validation one)."""
        loaders = (self.train_dl, self.valid_dl)
        if isinstance(i, bool) or not isinstance(i, Integral) or not -2 <= i < 2:
            raise IndexError(f"index: expected 0 (train) or 1 (valid), got {i!r}")
        return loaders[int(i)]


class ImageDataBunch(LoaderPair):
    """Train and validation images as device batches (fastai v1 name; see the module doc).

    Attributes: classes (a `CategoryMap`; vocab), c, path, device, decode_device (where JPEG
    files are decoded), size (model input), presize, stats, seed, bs, dropped_items (the
    unreadable files skip_bad=True left out), train_ds / valid_ds (`ImageDataset`: ``ds[i] ->
    (TensorImage uint8 [3, P, P], TensorCategory)``, the centre window; v1's ``ds.x``,
    ``ds.y``), train_dl / valid_dl (`DeviceDataLoader`: ``(x float [B, 3, S, S], y int64
    [B])`` on the device; also ``dls[0]`` / ``dls[1]``),
    labeller (how a file gets its label, for ``test_dl(with_labels=True)``; None when the
    labels came from a list or a table), test_ds (fastai v1's unlabelled test set, None until
    `add_test` or a from_* method's ``test=`` folder adds one). Build it with the ``from_*``
    class methods; each takes fastai v1's ``test``, ``resize_method`` and ``padding_mode``.
    """

    fastai_version = 1  # whose defaults where v1 and v2 differ (ImageDataLoaders: 2)
    _label_from = "path"  # from_name_re / from_name_func read the whole path, as fastai v1
    _seed_rng = "numpy"  # seed=None: drawn from numpy's global RNG, as fastai v1's split
    _split_rule = "v1"  # valid_pct: fastai v1's split_by_rand_pct (items.random_split)

    def __init__(
        self,
        path: str | Path,
        split: ItemSplit,
        pipeline: _Pipeline,
        *,
        seed: int,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        data_folder: str | Path | None = None,
        labeller: Labeller | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
    ) -> None:
        self.path = DataPath(path)  # with fastai's ls(): dls.path.ls()
        # how an image file gets its label, as the training items got theirs (test_dl)
        self.labeller = labeller
        # a script's plots never land among these images (data_folder: where they lie, when
        # `path` is only where the learner saves, as DataBlock.dataloaders' path='.')
        keep_out_of(self.path if data_folder is None else data_folder)
        self.device = _resolve_device(device)
        self._decode_request = decode_device
        self.decode_device = resolve_decode_device(decode_device, self.device)
        self.seed, self.bs = seed, bs
        self.size, self.presize = pipeline.size, pipeline.presize
        self.spec = pipeline.spec
        if cache is not None and not isinstance(cache, bool | str | os.PathLike):
            raise TypeError(f"cache: expected a bool or a folder path, got {cache!r}")
        folder = None if cache is None or isinstance(cache, bool) else Path(cache)
        self.dropped_items: list[Path] = []
        if skip_bad:
            split, self.dropped_items = _drop_bad(split, num_workers)
        self.classes = CategoryMap(split.classes)
        if len(self.classes) < 2:
            raise ValueError(
                f"classes: a classifier needs at least 2 classes, got {self.classes} from "
                f"{str(self.path)!r} ({len(split.train_items)} training images): every image "
                "has the same label; check the folder layout or the labelling pattern"
            )

        def dataset(items, labels):
            c = DecodedCache(items, pipeline.presize, pipeline.method, folder) if cache else None
            return ImageDataset(items, labels, self.classes, pipeline.presize, pipeline.method, c)

        self.train_ds = dataset(split.train_items, split.train_labels)
        self.valid_ds = dataset(split.valid_items, split.valid_labels)
        common = dict(
            size=self.size, device=self.device, seed=seed, num_workers=num_workers,
            channels_last=channels_last,
        )  # fmt: skip
        self.train_dl = DeviceDataLoader(
            self.train_ds,
            bs,
            train=True,
            spec=self.spec,
            shuffle=shuffle,
            drop_last=drop_last,
            **common,
        )
        self.bs = self.train_dl.bs  # checked there (a NumPy int becomes an int)
        val_bs = self.bs if val_bs is None else check_positive_int("val_bs", val_bs)  # 0 too
        self.valid_dl = DeviceDataLoader(self.valid_ds, val_bs, train=False, **common)
        self._test_loader: DeviceDataLoader | None = None  # fastai v1's test set (add_test)
        self.stats: tuple[list[float], list[float]] | None = None
        if pipeline.stats is not None:
            self.normalize(None if pipeline.stats is MEASURED else pipeline.stats)

    # -- constructors (shared by both spellings) ----------------------------------------------

    @classmethod
    def _build(
        cls,
        path: str | Path,
        make_split: Callable[[int], ItemSplit],
        seed: int | None,
        ds_tfms: object,
        size: int | None,
        item_tfms: object,
        batch_tfms: object,
        *,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
        **kwargs,
    ) -> ImageDataBunch:
        """The bunch of a from_* method. fastai v1's `test`: a folder (under `path`) of
        unlabelled images, added by `add_test`; resize_method and padding_mode: v1's
        `_resolve_pipeline`."""
        pipeline = _resolve_pipeline(
            ds_tfms, size, item_tfms, batch_tfms, resize_method, padding_mode
        )
        test_items = None if test is None else images_of_test_folder(test, path)
        seed = _resolve_seed(seed, cls._seed_rng)
        split = make_split(seed)
        pipeline = _sized(pipeline, split.train_items + split.valid_items)
        bunch = cls(path, split, pipeline, seed=seed, **kwargs)
        if test_items is not None:
            bunch.add_test(test_items)
        return bunch

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        *,
        vocab: Sequence[object] | None = None,
        classes: Sequence[object] | None = None,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
    ) -> ImageDataBunch:
        """ImageNet-style folders: ``path/train/<class>/...`` and ``path/valid/<class>/...``;
        or, with `valid_pct`, every image under `path` labelled by its parent folder and
        split at random. vocab: the classes (fastai v2's ``vocab=``; it may name classes
        without images), sorted as fastai's CategoryBlock sorts them; classes: the same in the
        order given (fastai v1's ``classes=``). A label of the images outside them is an
        error. Neither: the labels found, sorted."""
        if vocab is not None and classes is not None:
            raise ValueError(
                f"classes: give vocab (fastai v2's) or classes (fastai v1's), not both; got "
                f"vocab={vocab!r}, classes={classes!r}"
            )
        names, arg, sort = (
            (vocab, "vocab", True) if classes is None else (classes, "classes", False)
        )

        def split(seed: int) -> ItemSplit:
            return items_from_folder(
                path, train, valid, valid_pct, seed, cls._split_rule, exclude=test
            )

        return cls._build(
            path,
            split if names is None else lambda s: _with_vocab(split(s), names, arg, sort),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
            labeller=parent_label,
        )  # fmt: skip

    @classmethod
    def from_name_re(
        cls,
        path: str | Path,
        fnames: Iterable[str | Path],
        pat: str | re.Pattern[str],
        valid_pct: float = 0.2,
        seed: int | None = None,
        *,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
    ) -> ImageDataBunch:
        """Label = first group of `pat` in each file's full path (ImageDataLoaders, fastai v2:
        in its file name); random split."""
        return cls._by_pattern(
            cls._label_from, path, fnames, pat, valid_pct, seed,
            ds_tfms=ds_tfms, size=size, item_tfms=item_tfms, batch_tfms=batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
        )  # fmt: skip

    @classmethod
    def _by_pattern(
        cls,
        label_from: str,
        path: str | Path,
        fnames: Iterable[str | Path],
        pat: str | re.Pattern[str],
        valid_pct: float,
        seed: int | None,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        **options: Any,
    ) -> ImageDataBunch:
        """from_name_re (label_from: `_label_from`) and from_path_re ('path')."""
        fnames = check_fnames(fnames)
        return cls._build(
            path,
            lambda s: items_from_name_re(
                path, fnames, pat, valid_pct, s, label_from, rule=cls._split_rule
            ),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            labeller=_regex_labeller(pat, label_from), **options,
        )  # fmt: skip

    @classmethod
    def from_name_func(
        cls,
        path: str | Path,
        fnames: Iterable[str | Path],
        label_func: Callable[[Path], object],
        valid_pct: float = 0.2,
        seed: int | None = None,
        *,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
    ) -> ImageDataBunch:
        """Label = ``str(label_func(file_path))`` (ImageDataLoaders, fastai v2:
        ``label_func(file_name)``, a str); random split."""
        return cls._by_func(
            cls._label_from, path, fnames, label_func, valid_pct, seed,
            ds_tfms=ds_tfms, size=size, item_tfms=item_tfms, batch_tfms=batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
        )  # fmt: skip

    @classmethod
    def _by_func(
        cls,
        label_from: str,
        path: str | Path,
        fnames: Iterable[str | Path],
        label_func: Callable[[Any], object],
        valid_pct: float,
        seed: int | None,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        **options: Any,
    ) -> ImageDataBunch:
        """from_name_func (label_from: `_label_from`) and from_path_func ('path')."""
        fnames = check_fnames(fnames)
        return cls._build(
            path,
            lambda s: items_from_name_func(
                path, fnames, label_func, valid_pct, s, label_from, rule=cls._split_rule
            ),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            labeller=_func_labeller(label_func, label_from), **options,
        )  # fmt: skip

    @classmethod
    def from_lists(
        cls,
        path: str | Path,
        fnames: Iterable[str | Path],
        labels: Iterable[object],
        valid_pct: float = 0.2,
        seed: int | None = None,
        *,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
        y_block: object = None,
    ) -> ImageDataBunch:
        """Labels given in a list aligned with `fnames`; random split. y_block (fastai v2's):
        CategoryBlock only (single-label classification)."""
        _check_y_block(y_block)
        fnames = check_fnames(fnames)
        return cls._build(
            path,
            lambda s: items_from_lists(path, fnames, labels, valid_pct, s, rule=cls._split_rule),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
        )  # fmt: skip

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        folder: str | Path | None = None,
        csv_labels: str | Path = "labels.csv",
        valid_pct: float = 0.2,
        seed: int | None = None,
        fn_col: int | str = 0,
        label_col: int | str = 1,
        suffix: str = "",
        delimiter: str | None = None,
        header: int | str | None = "infer",
        *,
        valid_col: int | str | None = None,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
        label_delim: str | None = None,
        y_block: object = None,
    ) -> ImageDataBunch:
        """Files and labels from ``path/csv_labels`` (fastai v1's signature; MNIST_SAMPLE's
        labels.csv: ``name,label`` then ``train/3/7463.png,0``): file
        ``path/folder/(name + suffix)``, label from column `label_col`; random split. The
        CSV is read without pandas (header 'infer' or 0: the first row names the columns;
        None: no header row). valid_col (fastai v2's): a column of True/False (or 1/0)
        whose true rows are the validation set, in place of the random split. label_delim
        (multi-label) is refused; y_block (fastai v2's): CategoryBlock only."""
        check_label_delim(label_delim)
        _check_y_block(y_block)
        if not isinstance(csv_labels, str | os.PathLike):
            raise TypeError(f"csv_labels: expected a CSV file name, got {csv_labels!r}")
        file = check_path(path) / csv_labels
        names, labels = read_labels_csv(file, fn_col, label_col, header, delimiter)
        valid = None if valid_col is None else read_valid_csv(file, valid_col, header, delimiter)
        return cls._build(
            path,
            lambda s: items_from_table(
                path, names, labels, folder, suffix, valid_pct, s, cls._split_rule, valid
            ),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
        )  # fmt: skip

    @classmethod
    def from_df(
        cls,
        path: str | Path,
        df: object,
        folder: str | Path | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        fn_col: int | str = 0,
        label_col: int | str = 1,
        suffix: str = "",
        *,
        valid_col: int | str | None = None,
        ds_tfms: object = _UNSET,
        size: int | None = None,
        item_tfms: object = None,
        batch_tfms: object = None,
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int | None = None,
        cache: bool | str | os.PathLike | None = False,
        skip_bad: bool = False,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        decode_device: torch.device | str | None = None,
        test: str | os.PathLike | None = None,
        resize_method: str | None = None,
        padding_mode: str | None = None,
        label_delim: str | None = None,
        y_block: object = None,
    ) -> ImageDataBunch:
        """Files and labels from a pandas DataFrame (fastai v1's signature): file
        ``path/folder/(df[fn_col] + suffix)``, label ``df[label_col]`` (columns by position
        or by name); random split, or with valid_col (fastai v2's) the rows whose
        ``df[valid_col]`` is true in validation (fastai's ColSplitter; True/False or 1/0,
        blank or NaN False, anything else a ValueError naming the row).
        Needs pandas (an optional dependency). label_delim (multi-label) is refused; y_block
        (fastai v2's): CategoryBlock only."""
        check_label_delim(label_delim)
        _check_y_block(y_block)
        names, labels = _df_columns(df, fn_col=fn_col, label_col=label_col)
        valid = (
            None
            if valid_col is None
            else valid_flags(_df_columns(df, valid_col=valid_col)[0], "valid_col")
        )
        return cls._build(
            path,
            lambda s: items_from_table(
                path, names, labels, folder, suffix, valid_pct, s, cls._split_rule, valid
            ),
            seed, ds_tfms, size, item_tfms, batch_tfms,
            bs=bs, val_bs=val_bs, num_workers=num_workers, cache=cache, skip_bad=skip_bad,
            device=device, channels_last=channels_last, decode_device=decode_device,
            test=test, resize_method=resize_method, padding_mode=padding_mode,
        )  # fmt: skip

    # -- the bunch interface ------------------------------------------------------------------

    @property
    def c(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def vocab(self) -> CategoryMap:
        """fastai v2's name for `classes` (``vocab.o2i``: name -> index)."""
        return self.classes

    def test_dl(
        self,
        test_items: Iterable[str | os.PathLike],
        with_labels: bool = False,
        bs: int | None = None,
    ) -> DeviceDataLoader:
        """fastai v2's ``dls.test_dl(test_items, with_labels=False)``: a loader of image files
        through the validation transform (presize, centre crop, normalization), in the order
        given, for ``learn.get_preds(dl=...)`` (rows in that order) or ``learn.validate(dl=...)``
        (with labels).

        with_labels=False: batches ``(x,)`` (fastai's); get_preds returns targets None.
        with_labels=True: each file labelled as the training images were, by the parent
        folder (from_folder), the pattern (from_name_re, from_path_re) or the function
        (from_name_func, from_path_func), or get_y of the file (a DataBlock whose items are
        files); a label outside `vocab` is a ValueError. Bunches labelled from a list, a CSV
        file or a DataFrame have no rule to label a new file: a ValueError says so.
        test_items may also hold PIL images, uint8 arrays or tensors (fastbook ch. 18's
        ``x, = first(dls.test_dl([img]))``; with_labels needs files); for a DataFrame pass its
        file paths. Every file is decoded once here: an unreadable one is a BadImageError
        naming it (a loader skips unreadable images, and get_preds' rows would no longer line
        up with the files, as fastai's test_dl raises on them too). bs: default the validation
        batch size.
        """
        items = check_test_items(test_items)
        files = [f for f in items if isinstance(f, Path)]
        labels = self._labels_of(items) if check_bool("with_labels", with_labels) else None
        v = self.valid_dl
        check_test_images(files, v.num_workers)
        ds = ImageDataset(items, labels, self.classes, self.presize, self.valid_ds.method)
        return DeviceDataLoader(
            ds, v.bs if bs is None else bs, train=False, size=self.size, device=self.device,
            seed=self.seed, stats=self.stats, num_workers=v.num_workers,
            channels_last=v.channels_last,
            decoder=self._decoder() if len(files) == len(items) else None,
        )  # fmt: skip

    def _labels_of(self, items: list[Path]) -> list[int]:
        """The class index of each file by `labeller` (test_dl's with_labels)."""
        if self.labeller is None:
            raise ValueError(
                "with_labels: True needs the rule that labelled the training images (a folder, "
                "a pattern, a function); this bunch's labels came from a list, a CSV file or "
                "a DataFrame: pass with_labels=False"
            )
        return labels_of(items, self.labeller, self.classes)

    @property
    def bad_items(self) -> list[Path]:
        """Unreadable image files met so far by the training and validation loaders (each
        skipped from its batches with a warning per epoch); empty with skip_bad=True, which
        drops them before training (they are in `dropped_items`)."""
        return self.train_dl.bad_items + self.valid_dl.bad_items

    def add_test(self, items: Iterable[str | os.PathLike]) -> None:
        """fastai v1's ``data.add_test(items)``: image files as the unlabelled test set,
        `test_ds` (its ``items`` in the order given), read by ``dl('test')`` through the
        validation transform: ``learn.get_preds(ds_type=DatasetType.Test)`` predicts it in
        that order (targets None; v1's were zeros). Every file is decoded once here (an
        unreadable one is a BadImageError naming it, as test_dl). A second call replaces
        the set. (v1's ``data.test_dl`` is a loader; here ``test_dl(items)`` is fastai v2's
        method making one, and ``dl('test')`` is the test set's.)"""
        self._test_loader = self.test_dl(items)

    @property
    def test_ds(self) -> ImageDataset | None:
        """The dataset of the test set (`add_test`), or None."""
        return None if self._test_loader is None else self._test_loader.dataset

    def _loaders(self) -> list[DeviceDataLoader]:
        """The training and validation loaders, and the test set's when there is one."""
        return [self.train_dl, self.valid_dl] + (
            [] if self._test_loader is None else [self._test_loader]
        )

    def dl(self, ds_type: str = "valid") -> DeviceDataLoader:
        """fastai v1's ``data.dl(ds_type)``: the loader of 'train', 'valid' or 'test' (the
        set of `add_test`; a ValueError when there is none)."""
        if ds_type == "train":
            return self.train_dl
        if ds_type == "valid":
            return self.valid_dl
        if ds_type == "test":
            if self._test_loader is None:
                raise ValueError(
                    "ds_type 'test': this data has no test set; add one with "
                    "data.add_test(files) or from_folder(..., test='test') (fastai v1's), or "
                    "predict files with learn.get_preds(dl=data.test_dl(files)) (fastai v2's)"
                )
            return self._test_loader
        raise ValueError(f"ds_type: expected 'train', 'valid' or 'test', got {ds_type!r}")

    def normalize(self, stats: Stats | None = None) -> ImageDataBunch:
        """Normalize batches with (mean, std) per channel in [0, 1] units (e.g.
        `imagenet_stats`); `None` measures them on one validation batch. Returns self."""
        if not isinstance(self, ImageDataBunch):  # ImageDataBunch.normalize(imagenet_stats)
            raise TypeError(
                f"normalize is a method of your data: data.normalize(imagenet_stats), where "
                f"data is what ImageDataBunch.from_folder(...) returned; it was called on the "
                f"class with {short_repr(self)} as the data"
            )
        if stats is None:
            self.stats = None
            self.train_dl.stats = self.valid_dl.stats = None
            x, _ = self.valid_dl.one_batch()
            stats = (x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).tolist())
        self.stats = _check_stats(stats)
        for dl in self._loaders():
            dl.stats = self.stats
        return self

    def one_batch(
        self, ds_type: str = "train", detach: bool = True, denorm: bool = False, cpu: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch of the next epoch of `ds_type` ('train', 'valid' or 'test'; the loader's
        `DeviceDataLoader.one_batch`): ``(x float [B, 3, S, S], y int64 [B])`` on the
        device, x normalized, as fastai v2's ``dls.one_batch()``. fastai v1's keywords:
        denorm=True undoes the normalization (x in [0, 1]), cpu=True moves both to the CPU
        (v1's defaults were True for both; here v2's, False); detach is accepted (a batch
        never needs gradients). y is None for the test set."""
        check_bool("detach", detach)
        x, *y = self.dl(ds_type).one_batch()
        y = y[0] if y else None
        if check_bool("denorm", denorm):
            x = self.denorm(x)
        if check_bool("cpu", cpu):
            x, y = x.cpu(), None if y is None else y.cpu()
        return x, y

    def denorm(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalization: float ``[B, 3, H, W]`` -> the same in [0, 1]."""
        return denormalize(x, self.stats)

    def decode(
        self, b: tuple[torch.Tensor, torch.Tensor | None]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """fastai v2's ``dls.decode(b)``: a batch ``(x float [B, 3, S, S], y)`` with its
        normalization undone, ``(int64 [B, 3, S, S] in [0, 255], y)`` on x's device, as
        fastai's (its IntToFloatTensor decodes to int64 pixels; it truncates x * 255, this one
        rounds, so an undone pixel is the one that went in). y is kept as given (a tensor of
        class indices, as fastai's; `decode_batch` gives names). `DeviceDataLoader.decode`
        (``dls.train.decode(b)``) does it."""
        return self.train_dl.decode(b)

    def decode_batch(self, b: tuple[torch.Tensor, torch.Tensor | None], max_n: int = 9) -> L:
        """fastai v2's ``dls.decode_batch(b, max_n=9)``: the first max_n items of batch `b`,
        each ``(int64 [3, S, S] in [0, 255], class name)`` (`decode`'s pixels; fastai's
        label is a Category, a str; here the str), or ``(pixels,)`` for a batch without
        labels (a test_dl's), in an L."""
        max_n = check_int("max_n", max_n, 1)
        x, *rest = self.decode(b)
        y = rest[0] if rest else None
        n = min(max_n, len(x))
        if y is None:
            return L((x[k],) for k in range(n))
        return L((x[k], str(self.classes[int(y[k])])) for k in range(n))

    def show_batch(
        self,
        rows: int | None = None,
        figsize: tuple[float, float] | None = None,
        ds_type: str = "train",
        *,
        max_n: int | None = None,
        nrows: int | None = None,
        ncols: int | None = None,
        unique: bool = False,
        b: tuple[torch.Tensor, ...] | None = None,
        ctxs: Any = None,
    ) -> PlotFigure | None:
        """Images of one batch of `ds_type` (augmented as training sees them for 'train'),
        denormalized, each titled with its class: `DeviceDataLoader.show_batch` of that loader.

        fastai v1: a rows x rows grid of rows * rows images, figsize (7, 6) by default. fastai
        v2: max_n images (default 9, at most a batch) in nrows x ncols
        (`DeviceDataLoader.show_batch` gives the rule), also when no grid argument is given:
        a batch of 9 or more then gives v1's 3 x 3 grid of (7, 6) inches, a smaller one a
        grid that fits it (bs 4: 2 x 2, as fastai's); unique=True:
        one training image augmented max_n times; b (a batch of one_batch; fastai's first
        positional argument, so a tuple given as rows is taken as b) and ctxs (Axes to draw
        into) as fastai v2's. rows mixed with max_n, nrows or ncols must agree with them
        (max_n = rows * rows, nrows = ncols = rows). Returns the matplotlib Figure (None when
        drawn into ctxs); outside a notebook also saved as
        ``<plot dir>/show_batch_<ds_type>.png`` (``..._unique.png``; see fastcore_ext.plots),
        never inside the data set."""
        dl = self.dl(ds_type)
        if b is None and isinstance(rows, tuple | list):
            b, rows = rows, None  # fastai v2's dls.show_batch(b)
        if rows is None:
            n = 9 if max_n is None else max_n
            return dl.show_batch(n, nrows, ncols, figsize, unique, b=b, ctxs=ctxs)
        rows = check_positive_int("rows", rows)
        for name, value, implied in (
            ("max_n", max_n, rows * rows), ("nrows", nrows, rows), ("ncols", ncols, rows)
        ):  # fmt: skip
            if value is not None and value != implied:
                raise ValueError(
                    f"rows: fastai v1's rows={rows} shows a {rows} x {rows} grid of "
                    f"{rows * rows} images, which contradicts {name}={value!r}; pass rows "
                    "alone (fastai v1) or max_n/nrows/ncols (fastai v2)"
                )
        figsize = check_figsize(figsize, (7, 6))
        return dl.show_batch(rows * rows, rows, rows, figsize, unique, b=b, ctxs=ctxs)

    def preprocess(self, items: ImageSource | Sequence[ImageSource]) -> torch.Tensor:
        """The validation transform of raw items (paths, PIL images, uint8 arrays/tensors; one
        or a list) -> float ``[B, 3, S, S]`` normalized on the device, for predict and TTA."""
        if isinstance(items, list | tuple):
            items = list(items)
        else:
            items = [items]
        if not items:
            raise ValueError("items: expected at least one image, got an empty list")
        p = self.presize
        x = torch.empty((len(items), p, p, 3), dtype=torch.uint8)
        for k, item in enumerate(items):
            x[k].copy_(load_image(item, p, self.valid_ds.method).permute(1, 2, 0))
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return self.valid_dl.augment(x, None)

    def _decoder(self) -> JpegBatchDecoder | None:
        if self.decode_device.type == "cpu":
            return None
        return JpegBatchDecoder(self.decode_device)

    def cpu(self) -> ImageDataBunch:
        """fastai v2's ``dls.cpu()``: ``to('cpu')``. Returns self."""
        return self.to("cpu")

    def cuda(self) -> ImageDataBunch:
        """fastai v2's ``dls.cuda()``: ``to('cuda')`` (the current CUDA device). Without CUDA
        a ValueError says so (fastai's stays on the CPU without a word). Returns self."""
        if not torch.cuda.is_available():
            raise ValueError(
                "device: cuda() moves the batches to a CUDA GPU, and torch.cuda.is_available() "
                f"is False (the batches stay on {self.device}); leave out the call, or use "
                "dls.cpu()"
            )
        return self.to("cuda")

    def to(self, device: torch.device | str) -> ImageDataBunch:
        """Batches go to `device` from now on (JPEG decoding too, when decode_device was left
        to choose). Returns self."""
        self.device = _resolve_device(device)
        self.decode_device = resolve_decode_device(self._decode_request, self.device)
        for dl in self._loaders():
            dl.set_decoder(self._decoder())
            dl.to(self.device)
        return self

    def __repr__(self) -> str:
        test = "" if self.test_ds is None else f", test {len(self.test_ds)}"
        return (
            f"{type(self).__name__}({self.c} classes; train {len(self.train_ds)}, "
            f"valid {len(self.valid_ds)}{test} images; size {self.size} from presize "
            f"{self.presize}; "
            f"bs {self.bs}; device {self.device}; path {self.path})"
        )


class ImageDataLoaders(ImageDataBunch):
    """fastai v2 spelling of `ImageDataBunch`: the same object; augmentation from an
    AugmentSpec in `batch_tfms` (``[*aug_transforms(size=224), Normalize.from_stats(...)]``),
    presize from ``item_tfms=Resize(n)``; from_name_re's pattern and from_name_func's
    label_func get the file name (a str), as in fastai v2 (v1's get the whole path)."""

    fastai_version = 2  # e.g. a plain learn.lr_find() draws its plot, as v2's
    _label_from = "name"  # from_name_re / from_name_func read the file name, as fastai v2
    _seed_rng = "torch"  # seed=None: drawn from torch's global RNG, as fastai v2's split
    _split_rule = "v2"  # valid_pct: fastai v2's RandomSplitter (items.random_split)

    @classmethod
    def from_path_re(
        cls,
        path: str | Path,
        fnames: Iterable[str | Path],
        pat: str | re.Pattern[str],
        valid_pct: float = 0.2,
        seed: int | None = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """fastai v2's from_path_re: label = the first group of `pat` searched in each file's
        whole path (its POSIX form; as `ImageDataBunch.from_name_re`, fastai v1's, reads it),
        where from_name_re reads the file name; random split. `kwargs` as from_name_re's
        (item_tfms, batch_tfms, bs, ...)."""
        _check_keywords("ImageDataLoaders.from_path_re", kwargs, ImageDataBunch.from_name_re)
        return cls._by_pattern("path", path, fnames, pat, valid_pct, seed, **kwargs)

    @classmethod
    def from_path_func(
        cls,
        path: str | Path,
        fnames: Iterable[str | Path],
        label_func: Callable[[Path], object],
        valid_pct: float = 0.2,
        seed: int | None = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """fastai v2's from_path_func: label = ``str(label_func(file_path))`` (the Path;
        from_name_func passes the file name); random split. `kwargs` as from_name_func's
        (item_tfms, batch_tfms, bs, ...)."""
        _check_keywords("ImageDataLoaders.from_path_func", kwargs, ImageDataBunch.from_name_func)
        return cls._by_func("path", path, fnames, label_func, valid_pct, seed, **kwargs)

    @classmethod
    def from_csv(  # type: ignore[override]  (fastai v2's argument order)
        cls,
        path: str | Path,
        csv_fname: str | Path = "labels.csv",
        header: int | str | None = "infer",
        delimiter: str | None = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """fastai v2's from_csv: ``path/csv_fname``; `kwargs` as `ImageDataBunch.from_csv`'s
        (folder, suff or suffix, fn_col, label_col, valid_col, valid_pct, seed, item_tfms,
        batch_tfms, bs...)."""
        kwargs = _suff_as_suffix(kwargs)
        _check_keywords("ImageDataLoaders.from_csv", kwargs, ImageDataBunch.from_csv)
        return super().from_csv(
            path, csv_labels=csv_fname, header=header, delimiter=delimiter, **kwargs
        )

    @classmethod
    def from_df(  # type: ignore[override]  (fastai v2's argument order: df first)
        cls,
        df: object,
        path: str | Path = ".",
        valid_pct: float = 0.2,
        seed: int | None = None,
        fn_col: int | str = 0,
        folder: str | Path | None = None,
        suff: str = "",
        label_col: int | str = 1,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """fastai v2's from_df: the DataFrame first, `path` defaulting to '.', the file
        suffix `suff` (v1's name `suffix` works too); `kwargs` as `ImageDataBunch.from_df`'s
        (valid_col, item_tfms, batch_tfms, bs, ...)."""
        kwargs = _suff_as_suffix({"suff": suff, **kwargs})
        _check_keywords("ImageDataLoaders.from_df", kwargs, ImageDataBunch.from_df)
        return super().from_df(
            path, df, folder=folder, valid_pct=valid_pct, seed=seed, fn_col=fn_col,
            label_col=label_col, **kwargs,
        )  # fmt: skip
