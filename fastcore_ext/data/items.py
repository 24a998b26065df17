"""Item sources: image files found in folders or given as lists, their labels, and the
train/validation split.

Every source returns an `ItemSplit`: the train and validation file paths with integer labels
into `classes` (sorted class names). Splits are deterministic functions of `seed`.

fastai v2's splitters and labellers for the DataBlock API are here too: `RandomSplitter`,
`GrandparentSplitter`, `FuncSplitter`, `IndexSplitter`, `ColSplitter` (each called on the
items gives fastai's ``(train indices, valid indices)``, in fastai's order), `parent_label`,
`RegexLabeller`, `using_attr` and `ColReader`.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastcore_ext.checks import check_bool, short_repr
from fastcore_ext.files import PLOTS_MARKER
from fastcore_ext.foundation import L
from fastcore_ext.warn import warn_user

from .paths import NotAFolderError

__all__ = [
    "ColReader",
    "ColSplitter",
    "EndSplitter",
    "FileGetter",
    "FileSplitter",
    "FuncSplitter",
    "GrandparentSplitter",
    "ImageGetter",
    "IndexSplitter",
    "MaskSplitter",
    "RandomSplitter",
    "RandomSubsetSplitter",
    "RegexLabeller",
    "TrainTestSplitter",
    "describe_labeller",
    "labeller_from",
    "labels_of",
    "parent_label",
    "using_attr",
    "IMAGE_EXTENSIONS",
    "ItemSplit",
    "MissingPathError",
    "get_image_files",
    "items_from_folder",
    "items_from_lists",
    "items_from_name_func",
    "items_from_name_re",
    "items_from_table",
    "random_split",
    "read_labels_csv",
    "read_valid_csv",
    "valid_flags",
]

# fastai's image_extensions (every mimetypes 'image/*' extension) that a decoder here reads:
# those Pillow registers with a reader (JPEG as .jfif and .jpe too, APNG, AVIF, JPEG 2000,
# PSD, PCX, SGI, Sun raster, FITS, ICO, X bitmaps; tests/test_data_items.py checks the list
# against Pillow's), and the HEIF family, which TorchCodec decodes where libheif is installed
# (elsewhere such a file is an unreadable image, named with the usual warning, rather than a
# class that silently vanishes). Left out: fastai's vector and metafile formats (.svg, .emf,
# .wmf: Pillow draws WMF only on Windows), camera raw files and the other formats nothing
# here decodes.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".avif", ".bmp",
     ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".jp2", ".jpf", ".jpx", ".psd",
     ".pcx", ".ras", ".rgb", ".sgi", ".xbm", ".xpm", ".fit", ".fits",
     ".heic", ".heif", ".heics", ".heifs", ".hif"}
)  # fmt: skip

# Stream identifier mixed into the split seed so the split never shares random numbers with
# the shuffle or the augmentation drawn from the same user seed.


class MissingPathError(FileNotFoundError, ValueError):
    """A folder or file the caller named does not exist (both a FileNotFoundError and a
    ValueError, so either `except` catches it)."""


def shown_names(names: Sequence[object], limit: int = 5) -> str:
    """The first `limit` of `names`, quoted, then "and N more": a message names a few of
    thousands of folders or files, never all of them."""
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    more = len(names) - limit
    return f"{shown} and {more:,} more" if more > 0 else shown


def check_path(path: object, arg: str = "path") -> Path:
    """`path` (a str or os.PathLike) as a Path; anything else is a TypeError naming `arg`."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"{arg}: expected a folder (a str or Path), got {path!r}")
    return Path(path)


def _check_is_folder(root: Path) -> None:
    """`path` must be an existing folder: NotAFolderError for a file, else MissingPathError
    (`_missing_folder`)."""
    if root.is_dir():
        return
    if root.exists():
        raise NotAFolderError(f"path: expected a folder, but {str(root)!r} is a file")
    raise MissingPathError(_missing_folder(root))


def _missing_folder(root: Path, arg: str = "path") -> str:
    """The error for a folder `arg` that does not exist, with the hint a user needs when the
    name starts with '~' (Python's paths do not expand it; fastai's get_image_files then
    finds no file)."""
    msg = f"{arg}: expected an existing folder, got {str(root)!r}"
    if str(root).startswith("~") and root.expanduser().is_dir():
        msg += f" ('~' is not expanded in a path: Path({str(root)!r}).expanduser() is one)"
    return msg


def _missing_hint(missing: Sequence[Path], root: Path | None) -> str:
    """Why files named relative to `root` may be missing, where it can be told: the names
    repeat root's last folder ('pets/pets/x.jpg': the names already hold it), or a file of
    that name exists in another Unicode normalization (macOS writes names decomposed)."""
    if not missing:
        return ""
    first = missing[0]
    if root is not None and root.name and first.is_relative_to(root):
        rel = first.relative_to(root)
        if rel.parts[:1] == (root.name,) and (root.parent / rel).is_file():
            return (
                f"; the names start with {root.name + '/'!r}, the folder they are taken in: "
                f"pass its parent ({str(root.parent)!r}) as the path, or drop that prefix"
            )
    parent = first.parent
    if parent.is_dir():
        want = unicodedata.normalize("NFC", first.name)
        for f in os.listdir(parent):
            if f != first.name and unicodedata.normalize("NFC", f) == want:
                return (
                    f"; {f!r} exists under another Unicode normalization of the same name "
                    "(macOS writes names decomposed): normalize the names, e.g. "
                    "unicodedata.normalize('NFD', name)"
                )
    return ""


@dataclass(frozen=True)
class ItemSplit:
    """The items of one data set, split: paths and integer labels into `classes`."""

    train_items: list[Path]
    train_labels: list[int]
    valid_items: list[Path]
    valid_labels: list[int]
    classes: list[str]


def get_image_files(
    path: str | Path,
    recurse: bool = True,
    folders: str | Iterable[str] | None = None,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> L:
    """Image files under `path` (by extension, case-insensitive), sorted, as an `L` (a list
    with fastcore's map / filter / attrgot ...); hidden files and
    folders (names starting with '.') are skipped, and so are the folders of plots this
    library made (`files.PLOTS_MARKER`: a script's ./plots run inside a data set). As
    fastai's get_files (os.walk with followlinks=True), folders that are symbolic links are
    followed, and a folder reached under two names (a link to a sibling class folder) is
    listed under both, its images once per name, as fastai lists them; only a link to a
    folder of its own path (itself or an
    ancestor: a loop) is not followed, so the walk ends. A link to a missing file is listed:
    a pass then names it as unreadable instead of leaving it out without a word.
    folders (fastai's): only the files under these sub-folders of `path` (a name or a list;
    '.' adds the files directly in `path`), e.g. ``get_image_files(path, folders=['train',
    'valid'])``."""
    root = check_path(path)
    _check_is_folder(root)
    if folders is not None:
        only = [folders] if isinstance(folders, str) else list(folders)
        if not all(isinstance(f, str) for f in only):
            raise TypeError(f"folders: expected a folder name or a list of them, got {folders!r}")
        files = [] if "." not in only else get_image_files(root, False, None, extensions)
        for name in sorted(set(only) - {"."}):
            if (root / name).is_dir():
                files += get_image_files(root / name, recurse, None, extensions)
        return L(sorted(files))
    exts = {e.lower() for e in extensions}
    files: list[Path] = []
    # the real folders on the path from `root` to each folder still to walk
    chains: dict[str, frozenset[str]] = {os.fspath(root): frozenset({os.path.realpath(root)})}
    for folder, dirs, names in os.walk(root, followlinks=True):
        chain = chains.pop(folder)
        kept = []
        for d in sorted(d for d in dirs if not d.startswith(".")) if recurse else []:
            sub = os.path.join(folder, d)
            if os.path.exists(os.path.join(sub, PLOTS_MARKER)):
                continue  # a folder of this library's plots, no images of the data set
            real = os.path.realpath(sub)
            if real not in chain:  # else a link to a folder of its own path: a loop
                kept.append(d)
                chains[sub] = chain | {real}
        dirs[:] = kept
        for name in names:
            full = os.path.join(folder, name)
            if (
                not name.startswith(".")
                and os.path.splitext(name)[1].lower() in exts
                and (os.path.isfile(full) or os.path.islink(full))
            ):
                files.append(Path(full))
    return L(sorted(files))


def ImageGetter(  # noqa: N802 (fastai's name)
    suf: str = "", recurse: bool = True, folders: str | Iterable[str] | None = None
) -> Callable[[str | os.PathLike], L]:
    """fastai v2's ``ImageGetter(suf='', recurse=True, folders=None)``: a DataBlock's
    get_items that lists ``get_image_files(source/suf, recurse, folders)``."""
    check_bool("recurse", recurse)

    def get_items(source: str | os.PathLike) -> L:
        return get_image_files(Path(source) / suf, recurse, folders)

    return get_items


def FileGetter(  # noqa: N802 (fastai's name)
    suf: str = "",
    extensions: Iterable[str] | None = None,
    recurse: bool = True,
    folders: str | Iterable[str] | None = None,
) -> Callable[[str | os.PathLike], L]:
    """fastai v2's ``FileGetter(suf='', extensions=None, recurse=True, folders=None)``: a
    DataBlock's get_items that lists the files with these extensions (e.g. ['.jpg']) under
    ``source/suf``. extensions None or empty lists the image files (`IMAGE_EXTENSIONS`):
    fastai's lists every file, but a DataBlock here reads images only."""
    check_bool("recurse", recurse)
    if extensions is not None:
        if isinstance(extensions, str) or not isinstance(extensions, Iterable):
            raise TypeError(f"extensions: expected a list of suffixes ('.jpg'), got {extensions!r}")
        extensions = list(extensions)
        if not all(isinstance(e, str) for e in extensions):
            raise TypeError(f"extensions: expected a list of suffixes ('.jpg'), got {extensions!r}")
        extensions = [e if e.startswith(".") else f".{e}" for e in extensions]

    def get_items(source: str | os.PathLike) -> L:
        exts = extensions or IMAGE_EXTENSIONS
        return get_image_files(Path(source) / suf, recurse, folders, exts)

    return get_items


def _check_seed(seed: int, expected: str = "a non-negative int") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TypeError(f"seed: expected {expected}, got {seed!r}")
    return int(seed)


def _check_valid_pct(valid_pct: float) -> float:
    """valid_pct as a float in [0, 1) (0: no validation set, every item trains)."""
    if isinstance(valid_pct, bool) or not isinstance(valid_pct, Real):
        raise TypeError(f"valid_pct: expected a float in [0, 1), got {valid_pct!r}")
    if not 0.0 <= float(valid_pct) < 1.0:
        raise ValueError(f"valid_pct: expected a float in [0, 1), got {valid_pct!r}")
    return float(valid_pct)


SPLIT_RULES = ("v1", "v2")


def random_split(
    n: int, valid_pct: float, seed: int, rule: str = "v2"
) -> tuple[list[int], list[int]]:
    """Indices (train, valid) of fastai's random split of `n` items with `seed`; the
    validation set gets the first ``cut = int(valid_pct * n)`` entries of a permutation.

    rule 'v2' (ImageDataLoaders): fastai v2's ``RandomSplitter(valid_pct, seed)``, a
    ``torch.randperm(n)`` after seeding with `seed`, (perm[cut:], perm[:cut]) in the
    permutation's order. rule 'v1' (ImageDataBunch): fastai v1's ``split_by_rand_pct``,
    ``np.random.seed(seed); np.random.permutation(n)``, valid perm[:cut] in that order, train
    the other indices ascending. Neither touches a global RNG. valid_pct 0: every item
    trains, no validation set (fastai's DataBlock with RandomSplitter(valid_pct=0)); else
    both sets must be non-empty."""
    valid_pct = _check_valid_pct(valid_pct)
    seed = _check_seed(seed)
    if rule not in SPLIT_RULES:
        raise ValueError(f"rule: expected one of {SPLIT_RULES}, got {rule!r}")
    cut = int(valid_pct * n)
    if (cut == 0 and valid_pct > 0) or cut == n:
        raise ValueError(
            f"valid_pct: {valid_pct} of {n} items leaves an empty "
            f"{'validation' if cut == 0 else 'training'} set; use more items or another valid_pct"
        )
    if rule == "v2":
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        return perm[cut:], perm[:cut]
    if seed >= 2**32:
        raise ValueError(f"seed: fastai v1's split takes a seed below 2**32, got {seed}")
    valid = np.random.RandomState(seed).permutation(n)[:cut]
    return np.setdiff1d(np.arange(n), valid).tolist(), valid.tolist()


def _is_number(label: object) -> bool:
    """True for an int or float label (a Python, numpy or 0-d tensor number; not a bool)."""
    if isinstance(label, torch.Tensor | np.ndarray | np.generic):
        label = label.tolist() if getattr(label, "ndim", 0) == 0 else label
    return isinstance(label, int | float) and not isinstance(label, bool)


def _number_of_text(text: str) -> int | float:
    """The number a numeric class name spells, exactly (an int as an int: 2**53 + 1 sorts
    after 2**53, which float() would not tell apart)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _labelled(
    items: Sequence[Path],
    labels: Sequence[str],
    valid_pct: float,
    seed: int,
    rule: str,
    numeric: bool = False,
    valid: Sequence[bool] | None = None,
) -> ItemSplit:
    """The split of `items` with class names `labels`: random (valid_pct, seed, rule), or
    the items whose `valid` flag is true in validation (fastai's ColSplitter); the classes
    sorted as text, or by value where the labels came as numbers (`numeric`: fastai's vocab
    of a column of ints is 0, 1, 2, ..., 10, not '0', '1', '10', '2'), so class i is the
    i-th smallest."""
    classes = sorted(set(labels), key=_number_of_text if numeric else None)
    _warn_alike(classes)
    index = {c: i for i, c in enumerate(classes)}
    if valid is None:
        tr, va = random_split(len(items), valid_pct, seed, rule)
    else:
        tr = [i for i, v in enumerate(valid) if not v]
        va = [i for i, v in enumerate(valid) if v]
        if not tr:  # no validation row is fine: every row trains
            raise ValueError(
                f"valid_col: expected training rows, got {len(va)} validation rows of "
                f"{len(items)} and no training row"
            )
    untrained = sorted(set(classes) - {labels[i] for i in tr})
    if untrained:
        counts = [sum(labels[i] == c for i in va) for c in untrained]
        shown = ", ".join(f"{c!r} ({n})" for c, n in zip(untrained, counts, strict=True))
        if valid is None:
            arg, how = "valid_pct", f"the random split (valid_pct={valid_pct}, seed={seed})"
            fix = "Give each class more images, or choose another seed or valid_pct"
        else:
            arg, how = "valid_col", "the validation column"
            fix = "Mark some of their rows as training rows, or leave those classes out"
        warn_user(
            f"{arg}: {how} put every image of {len(untrained)} class(es) in the validation "
            f"set, so the model cannot learn them: {shown}. {fix}"
        )
    return ItemSplit(
        [items[i] for i in tr],
        [index[labels[i]] for i in tr],
        [items[i] for i in va],
        [index[labels[i]] for i in va],
        classes,
    )


def _warn_alike(classes: Sequence[str]) -> None:
    """A warning naming classes that differ only in case or surrounding spaces ('cat',
    ' cat', 'Cat': three classes, as fastai makes them, but almost always one mislabelled)."""
    groups: dict[str, list[str]] = {}
    for c in classes:
        groups.setdefault(str(c).strip().casefold(), []).append(c)
    alike = [g for g in groups.values() if len(g) > 1]
    if alike:
        shown = "; ".join(", ".join(repr(c) for c in g) for g in alike[:3])
        warn_user(
            f"labels: {sum(map(len, alike))} classes differ only in case or surrounding "
            f"spaces ({shown}{' ...' if len(alike) > 3 else ''}): each is a class of its own, "
            "as in fastai; clean the labels (e.g. str.strip) if they are one"
        )


def _resolve_name(root: Path, f: Path) -> Path:
    """A relative name is taken relative to `root`, or as given (relative to the working
    folder) when only that file exists: `get_image_files(Path('pets'))` gives names that
    already start with 'pets/', as in fastai, whose lists keep names as given."""
    if f.is_absolute():
        return f
    if (root / f).is_file() or not f.is_file():
        return root / f
    return f


def check_fnames(fnames: object) -> list[str | os.PathLike]:
    """`fnames` as a list of file names. A single str or Path (a file, or a folder) is a
    TypeError saying that a list is expected, as is a name that is neither a str nor a
    Path."""
    hint = "get_image_files(path) makes one"
    if isinstance(fnames, str | os.PathLike):
        what = "folder" if os.path.isdir(fnames) else "single name"
        raise TypeError(
            f"fnames: expected a list of image files ({hint}), got the {what} {str(fnames)!r}"
        )
    if not isinstance(fnames, Iterable):
        raise TypeError(
            f"fnames: expected a list of image files ({hint}), got {type(fnames).__name__}"
        )
    names = list(fnames)
    for i, f in enumerate(names):
        if not isinstance(f, str | os.PathLike):
            raise TypeError(f"fnames: expected file names (str or Path), got {f!r} at position {i}")
    return names


def _resolve_fnames(
    path: str | Path, fnames: Iterable[str | Path], table: bool = False
) -> list[Path]:
    """The files `fnames` names, relative to `path`. A list's names may also be relative to
    the working folder, where only that file exists (`_resolve_name`); a table's (`table`:
    from_df / from_csv, errors naming fn_col) are always under `path`, as fastai's take
    them."""
    root = check_path(path)
    names = check_fnames(fnames)
    arg = "fn_col" if table else "fnames"
    if table:
        items = [Path(f) if Path(f).is_absolute() else root / f for f in names]
    else:
        items = [_resolve_name(root, Path(f)) for f in names]
    if not items:
        raise ValueError(f"{arg}: expected at least one file, got an empty list")
    check_files_exist(items, arg, root)
    return items


def check_files_exist(items: Sequence[Path], arg: str, root: Path | None = None) -> None:
    """A MissingPathError naming `arg` and a few of `items` that are not files, if any (with
    a hint when the names repeat `root`'s last folder, or differ from the files' only in
    Unicode normalization)."""
    missing = [p for p in items if not p.is_file()]
    if missing:
        raise MissingPathError(
            f"{arg}: {len(missing)} of {len(items)} files do not exist (e.g. "
            f"{shown_names(missing, 3)}){_missing_hint(missing, root)}"
        )


def loose_images(files: Sequence[Path], folder: Path, holder: str = "folder") -> str:
    """What is wrong when some of `files` lie directly in `folder`, where each must be in a
    class `holder` ('folder', 'sub-folder'); '' when none does."""
    loose = [p for p in files if p.parent == folder]
    if not loose:
        return ""
    return (
        f"{len(loose)} images lie directly in {str(folder)!r} (e.g. {loose[0].name}); each "
        f"image must be inside a {holder} named after its class"
    )


def _class_folders(folder: Path, what: str) -> tuple[dict[str, list[Path]], list[str]]:
    """({class name: images} for each sub-folder of `folder` holding images, the names of the
    sub-folders holding none): as fastai's from_folder, the classes are the labels of the
    files found, so an empty folder is no class."""
    loose = loose_images(get_image_files(folder, recurse=False), folder, "sub-folder")
    if loose:
        raise ValueError(f"{what}: {loose}")
    subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subs:
        raise ValueError(f"{what}: no class sub-folders in {str(folder)!r}")
    out, empty = {}, []
    for d in subs:
        files = get_image_files(d)
        if files:
            out[d.name] = files
        else:
            empty.append(d.name)
    if not out:
        raise ValueError(
            f"{what}: none of the {len(subs)} class sub-folders of {str(folder)!r} contains "
            f"image files ({', '.join(sorted(IMAGE_EXTENSIONS))}): {shown_names(empty)}"
        )
    return out, empty


def _warn_empty(empty: Sequence[tuple[Path, list[str]]]) -> None:
    """One warning for the class folders without image files: (folder, names of its
    sub-folders holding none) for each folder of class folders; nothing when there are none."""
    ignored = [f"{len(n):,} in {str(f)!r} ({shown_names(n)})" for f, n in empty if n]
    if ignored:
        warn_user(
            f"path: ignored {sum(len(names) for _, names in empty):,} class folders that hold "
            f"no image files, as fastai does (the classes are the labels of the images "
            f"found): {'; '.join(ignored)}"
        )


# the folder a Learner saves into under its path (model_dir's default): no class folder
_MODEL_DIR = "models"


# the usual names of the two folders, for the hint when the given one is missing
_FOLDER_NAMES = {
    "train": ("train", "training", "trn"),
    "valid": ("valid", "val", "validation", "dev", "test", "testing"),
}
_SPLIT_NAMES = frozenset(n for names in _FOLDER_NAMES.values() for n in names)


def _check_tree(root: Path, files: Sequence[Path], left_out: Path | None = None) -> None:
    """The warnings about the tree of `valid_pct` (`files`: the images under `root`, each
    labelled by its parent folder): the top folders holding no image (no class, as in the
    train/valid layout; 'models', where a Learner saves, is not counted), and labels that come
    from several top folders (cat/2023/x.jpg and dog/2023/y.jpg are both '2023': fastai's rule,
    but almost always a tree whose classes are its top folders). A folder named as a split
    (train/, valid/, test/, ...) is not a top folder there: the one under it is (train/cat/
    and valid/cat/ give 'cat' from 'cat'). `left_out`: a folder not counted (a test set)."""
    tops: dict[str, set[str]] = {}  # label -> the folders under root it comes from
    with_images = set()
    for p in files:
        folders = p.relative_to(root).parts[:-1]
        with_images.add(folders[0])
        top = next((f for f in folders if f.lower() not in _SPLIT_NAMES), folders[-1])
        tops.setdefault(p.parent.name, set()).add(top)
    empty = sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in with_images
        and d.name != _MODEL_DIR and d != left_out and not (d / PLOTS_MARKER).exists()
    )  # fmt: skip
    _warn_empty([(root, empty)])
    mixed = sorted((label, sorted(t)) for label, t in tops.items() if len(t) > 1)
    if mixed:
        shown = "; ".join(f"{label!r} from {shown_names(t, 3)}" for label, t in mixed[:3])
        more = f" and {len(mixed) - 3:,} more" if len(mixed) > 3 else ""
        warn_user(
            f"path: each image is labelled by its parent folder (valid_pct, as fastai's "
            f"parent_label), and {len(mixed):,} label(s) come from several top folders of "
            f"{str(root)!r}, one class mixing their images: {shown}{more}. If the classes are "
            "the top folders (cat/2023/x.jpg), label by them: a DataBlock with get_y=lambda p: "
            "p.relative_to(path).parts[0], or ImageDataBunch.from_name_func(path, "
            "get_image_files(path), label_func=that function, valid_pct=...); or lay the tree "
            "out as train/<class>/ and valid/<class>/ (labelled by the first folder)"
        )
    folders = {p.parent.relative_to(root) for p in files}
    nested = sorted(d for d in folders if any(a in folders for a in d.parents if a != Path(".")))
    if nested:
        shown = ", ".join(f"{d.name!r} ({d.as_posix()})" for d in nested[:3])
        more = f" and {len(nested) - 3:,} more" if len(nested) > 3 else ""
        warn_user(
            f"path: {len(nested):,} folder(s) holding images lie inside another folder that "
            f"holds images, and each is a class of its own (fastai's parent_label): "
            f"{shown}{more}. Move their images up into the class folder, or label by the "
            "top folder (a DataBlock with get_y=lambda p: p.relative_to(path).parts[0])"
        )


def items_from_folder(
    path: str | Path,
    train: str = "train",
    valid: str = "valid",
    valid_pct: float | None = None,
    seed: int = 0,
    rule: str = "v2",
    exclude: str | os.PathLike | None = None,
) -> ItemSplit:
    """Items from an ImageNet-style folder tree (``path/exclude`` left out: fastai v1's test
    folder).

    With `valid_pct=None`: ``path/<train>/<class>/**/img`` and ``path/<valid>/<class>/**/img``
    (the class is the first folder under `train`/`valid`; classes are those of `train`).
    As fastai's, the classes are the labels of the images found: a class folder without
    images is no class (one warning counts and names a few such folders).
    With `valid_pct`: every image under `path`, labelled by its parent folder's name (fastai's
    rule), split at random with `seed` by fastai's `rule` (`random_split`: 'v2' or 'v1'); the
    same warning names the folders of `path` without
    images, and another the labels found under several of its folders (`_check_tree`).
    """
    root = check_path(path)
    _check_is_folder(root)
    if valid_pct is not None:
        _check_valid_pct(valid_pct)
        files = get_image_files(root)
        left_out = None if exclude is None else root / exclude
        if left_out is not None:
            files = [p for p in files if not p.is_relative_to(left_out)]
        if not files:
            raise ValueError(
                f"path: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {str(root)!r}"
            )
        loose = loose_images(files, root)
        if loose:
            raise ValueError(f"path: {loose}")
        _check_tree(root, files, left_out)
        return _labelled(files, [p.parent.name for p in files], valid_pct, seed, rule)

    def sub(name: str, arg: str) -> Path:
        if not isinstance(name, str | Path):
            raise TypeError(f"{arg}: expected a folder name, got {name!r}")
        folder = root / name
        if not folder.is_dir():
            have = sorted(d.name for d in root.iterdir() if d.is_dir())
            lower = {h.lower(): h for h in have}
            alike = [lower[n] for n in _FOLDER_NAMES[arg] if n in lower]
            hint = f"pass {arg}={alike[0]!r}" if alike else f"name the folders with {arg}="
            raise MissingPathError(
                f"{arg}: folder {str(name)!r} not found in {str(root)!r} (sub-folders: "
                f"{shown_names(have) or 'none'}); {hint}, or split one tree with valid_pct=0.2"
            )
        return folder

    train_dir, valid_dir = sub(train, "train"), sub(valid, "valid")
    train_cls, train_empty = _class_folders(train_dir, "train")
    valid_cls, valid_empty = _class_folders(valid_dir, "valid")
    _warn_empty([(train_dir, train_empty), (valid_dir, valid_empty)])
    unknown = sorted(set(valid_cls) - set(train_cls))
    if unknown:
        raise ValueError(
            f"valid: class folders {shown_names(unknown)} in {str(valid_dir)!r} have no images "
            f"in {str(train_dir)!r} to learn from (train classes: "
            f"{shown_names(sorted(train_cls))})"
        )
    classes = sorted(train_cls)
    tr_items = [p for c in classes for p in train_cls[c]]
    tr_labels = [i for i, c in enumerate(classes) for _ in train_cls[c]]
    va_items = [p for c in classes for p in valid_cls.get(c, [])]
    va_labels = [i for i, c in enumerate(classes) for _ in valid_cls.get(c, [])]
    return ItemSplit(tr_items, tr_labels, va_items, va_labels, classes)


_LABEL_FROM = ("path", "name")
_WHERE = {
    "path": "its whole path (fastai v1's from_name_re; ImageDataLoaders, fastai v2's, "
    "matches the file name)",
    "name": "its file name (fastai v2's from_name_re; ImageDataBunch, fastai v1's, matches "
    "the whole path)",
}


def _check_label_from(label_from: str) -> str:
    if label_from not in _LABEL_FROM:
        raise ValueError(f"label_from: expected one of {_LABEL_FROM}, got {label_from!r}")
    return label_from


def items_from_name_re(
    path: str | Path,
    fnames: Iterable[str | Path],
    pat: str | re.Pattern[str],
    valid_pct: float = 0.2,
    seed: int = 0,
    label_from: str = "path",
    rule: str = "v2",
) -> ItemSplit:
    """Label = first group of `pat` searched in each file's path (label_from='path', fastai
    v1: POSIX form; where that is relative and does not match, its absolute form, so
    r'/([^/]+)_\\d+.jpg$' works in the images folder itself) or in its file name
    (label_from='name', fastai v2: r'^(.+)_\\d+.jpg$'); relative names are taken relative
    to `path`, or as given when only that file exists. A file the pattern does not match, or
    a label holding a '/' (a pattern that matched across folders), is an error."""
    _check_label_from(label_from)
    try:
        rx = re.compile(pat)
    except (TypeError, re.error) as e:
        raise ValueError(f"pat: expected a regular expression, got {pat!r} ({e})") from e
    if rx.groups < 1:
        raise ValueError(f"pat: expected a regular expression with a group, got {rx.pattern!r}")
    items = _resolve_fnames(path, fnames)
    labels = []
    for p in items:
        if label_from == "name":
            m = rx.search(p.name)
        else:
            m = rx.search(p.as_posix())
            if (m is None or m.group(1) is None) and not p.is_absolute():
                m = rx.search(p.absolute().as_posix())
        if m is None or m.group(1) is None:
            raise ValueError(
                f"pat: the pattern '{rx.pattern}' does not match file '{p.as_posix()}' "
                f"(it is searched in {_WHERE[label_from]})"
            )
        if "/" in m.group(1):
            raise ValueError(
                f"pat: the pattern '{rx.pattern}' gives the label '{m.group(1)}' for file "
                f"'{p.as_posix()}', a path: it is searched in {_WHERE[label_from]}; match the "
                f"name alone, e.g. r'/([^/]+)_\\d+.jpg$'"
            )
        labels.append(_label_text(m.group(1), p, "pat"))
    return _labelled(items, labels, valid_pct, seed, rule)


def items_from_name_func(
    path: str | Path,
    fnames: Iterable[str | Path],
    label_func: Callable[[Any], object],
    valid_pct: float = 0.2,
    seed: int = 0,
    label_from: str = "path",
    rule: str = "v2",
) -> ItemSplit:
    """Label = `str(label_func(x))` with x the file's Path (label_from='path', fastai v1) or
    its file name as a str (label_from='name', fastai v2: fastbook's ``is_cat(x)`` reads
    ``x[0]``); None, NaN or an empty label is an error naming the file."""
    _check_label_from(label_from)
    if not callable(label_func):
        raise TypeError(f"label_func: expected a callable, got {label_func!r}")
    items = _resolve_fnames(path, fnames)
    raw = [_call_labeller(label_func, p, label_from) for p in items]
    labels = _label_texts(raw, items, "label_func")
    return _labelled(items, labels, valid_pct, seed, rule, all(map(_is_number, raw)))


def _call_labeller(label_func: Callable[[Any], object], item: Path, label_from: str) -> object:
    """``label_func(item)`` (its name with label_from='name'); an exception it raises carries
    a note naming the file."""
    try:
        return label_func(item.name if label_from == "name" else item)
    except Exception as e:
        e.add_note(f"label_func raised this for file {item.as_posix()!r}")
        raise


def _is_missing(label: object) -> bool:
    """None, a float NaN, or pandas' missing values (NA of its nullable columns, NaT)."""
    if label is None or (isinstance(label, float) and label != label):
        return True
    kind = type(label)
    return kind.__module__.startswith("pandas") and kind.__name__ in ("NAType", "NaTType")


def check_label_delim(label_delim: object) -> None:
    """fastai's `label_delim` (labels joined by it: multi-label targets) is refused; None
    passes."""
    if label_delim is not None:
        raise ValueError(
            f"label_delim: multi-label targets are not supported (single-label "
            f"classification), got label_delim={label_delim!r}"
        )


def _label_text(label: object, item: Path, arg: str) -> str:
    """One label as its class name: a number held in a numpy scalar or a 0-d tensor by its
    value (`tolist`); refused: None, NaN (a blank cell of a pandas table), blank text, several
    labels (a list or tuple: multi-label or point targets) and a float that is not a whole
    number (a regression target), each naming the file."""
    if isinstance(label, torch.Tensor | np.ndarray | np.generic):
        if getattr(label, "ndim", 0) != 0:
            raise ValueError(
                f"{arg}: expected one label per file, got {label!r} for file {item.as_posix()!r}"
            )
        label = label.tolist()
    if _is_missing(label):
        raise ValueError(f"{arg}: missing label ({label}) for file {item.as_posix()!r}")
    if isinstance(label, list | tuple | set | frozenset | dict):
        raise ValueError(
            f"{arg}: expected one label per file, got the {type(label).__name__} "
            f"{short_repr(label)} for file {item.as_posix()!r}: multi-label and point targets "
            f"are not supported (single-label classification)"
        )
    if isinstance(label, float) and not label.is_integer():
        raise ValueError(
            f"{arg}: got the float label {label!r} for file {item.as_posix()!r}: float targets "
            f"(regression) are not supported (single-label classification, a class label is "
            f"a str or an int); if these numbers name classes, give them as text (e.g. "
            f"df[col].astype(str))"
        )
    text = str(label)
    if not text.strip():
        raise ValueError(f"{arg}: empty label {text!r} for file {item.as_posix()!r}")
    return text


def _label_texts(labels: Sequence[object], items: Sequence[Path], arg: str) -> list[str]:
    """Each file's class name (`_label_text`); a whole float label equal to an int label (1.0
    beside 1, e.g. labels gathered from JSON and a table) is that int's class, named as the
    int ('1'), as fastai's set of labels holds one of them. Values are compared exactly (two
    ints a float cannot tell apart stay two classes)."""
    texts = [_label_text(y, p, arg) for y, p in zip(labels, items, strict=True)]
    values = [_number_value(y) for y in labels]
    ints = {v for v in values if isinstance(v, int)}
    return [
        str(int(v)) if isinstance(v, float) and int(v) in ints else t
        for v, t in zip(values, texts, strict=True)
    ]


def _number_value(label: object) -> int | float | None:
    """An int or float label's value (a numpy or 0-d tensor number by its `tolist`), else
    None (a bool is no number here)."""
    if not _is_number(label):
        return None
    return label.tolist() if hasattr(label, "tolist") else label  # type: ignore[union-attr]


def _label_list(labels: object, arg: str) -> list[object]:
    """`labels` as a list: a list, tuple or other iterable, or a 1-d tensor / numpy array /
    pandas Series by its values (`tolist`)."""
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(f"{arg}: expected a list of labels (one per file), got {labels!r}")
    if isinstance(labels, torch.Tensor | np.ndarray):
        if labels.ndim != 1:
            raise ValueError(
                f"{arg}: expected one label per file (1-d), got shape {tuple(labels.shape)}"
            )
        return labels.tolist()
    return list(labels)


def _items_with_labels(
    path: str | Path,
    fnames: Iterable[str | Path],
    labels: Iterable[object],
    valid_pct: float,
    seed: int,
    table: bool,
    rule: str = "v2",
    valid: Sequence[bool] | None = None,
) -> ItemSplit:
    """The split of `fnames` labelled by `labels`: a list's (from_lists, errors naming
    fnames / labels) or, with `table`, a table's rows (from_df / from_csv: fn_col /
    label_col)."""
    arg = "label_col" if table else "labels"
    labs = _label_list(labels, arg)
    items = _resolve_fnames(path, fnames, table)
    _warn_repeated(items, "fn_col" if table else "fnames")
    if len(labs) != len(items):
        raise ValueError(f"{arg}: expected {len(items)} labels (one per file), got {len(labs)}")
    if valid is not None and len(valid) != len(items):
        raise ValueError(f"valid_col: expected {len(items)} flags (one per file), got {len(valid)}")
    texts = _label_texts(labs, items, arg)
    numeric = all(map(_is_number, labs))
    return _labelled(items, texts, valid_pct, seed, rule, numeric, valid)


def _warn_repeated(items: Sequence[Path], arg: str) -> None:
    """A warning naming files that more than one row names: each row is an item, so the same
    image can land in training and in validation (a leak that flatters the validation
    error), or carry two labels; fastai says nothing."""
    counts = Counter(items)
    repeated = [p for p, n in counts.items() if n > 1]
    if repeated:
        warn_user(
            f"{arg}: {len(repeated)} file(s) are named more than once ({shown_names(repeated, 3)}"
            "): each row is an item of its own, so one image can be in both the training and "
            "the validation set, or carry two labels. Drop the repeated rows (e.g. "
            "df.drop_duplicates(fn_col)) unless that is meant"
        )


def items_from_lists(
    path: str | Path,
    fnames: Iterable[str | Path],
    labels: Iterable[object],
    valid_pct: float = 0.2,
    seed: int = 0,
    rule: str = "v2",
) -> ItemSplit:
    """Labels given as a list aligned with `fnames` (or a 1-d tensor / numpy array: its
    values), each converted with `str`; None, NaN and empty labels are errors naming the
    file."""
    return _items_with_labels(path, fnames, labels, valid_pct, seed, False, rule)


Column = int | str


def _column(name: str, col: object, header: list[str] | None, n_cols: int) -> int:
    """Index of column `col` (an int position or, with a header, a column name)."""
    if isinstance(col, str):
        if header is None:
            raise ValueError(f"{name}: a column name needs a header row, got {col!r} with none")
        if col not in header:
            raise ValueError(f"{name}: expected one of the columns {header}, got {col!r}")
        return header.index(col)
    if isinstance(col, bool) or not isinstance(col, int | np.integer):
        raise TypeError(f"{name}: expected a column position (int) or name (str), got {col!r}")
    if not -n_cols <= int(col) < n_cols:
        raise ValueError(f"{name}: expected a column position below {n_cols}, got {col!r}")
    return int(col)


def read_labels_csv(
    file: str | Path,
    fn_col: Column = 0,
    label_col: Column = 1,
    header: int | str | None = "infer",
    delimiter: str | None = None,
) -> tuple[list[str], list[Any]]:
    """(file names, labels) from a CSV file such as MNIST_SAMPLE's labels.csv
    (``name,label`` then ``train/3/7463.png,0`` rows), without pandas; a label column of
    numbers comes back as ints (or floats), as pandas reads it.

    header: 'infer' or 0: the first row names the columns (pandas' default for a file with a
    header row, as fastai's labels.csv); None: every row is data.
    fn_col, label_col: column positions, or names from the header row.
    delimiter: the field separator; None: the one the file's first lines use among ',', ';'
    (as spreadsheets in many locales write CSV), tab and '|' (`csv.Sniffer`), ',' when
    they do not tell.
    """
    file = Path(file)
    if not file.is_file():
        raise MissingPathError(f"csv_labels: expected an existing CSV file, got {str(file)!r}")
    if header not in ("infer", 0, None) or isinstance(header, bool):
        raise ValueError(f"header: expected 'infer', 0 or None, got {header!r}")
    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            text = f.read()
        if delimiter is None:
            delimiter = _sniffed_delimiter(text)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        lines = [(reader.line_num, r) for r in reader if r]  # line numbers for the errors
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(
            f"csv_labels: expected a UTF-8 CSV file of file names and labels, {str(file)!r} is "
            f"not one ({e})"
        ) from e
    names = lines.pop(0)[1] if header is not None and lines else None
    if not lines:
        raise ValueError(f"csv_labels: expected rows of file names and labels, {file} has none")
    rows = [r for _, r in lines]
    widths = Counter(len(r) for r in rows)
    width = len(names) if names is not None else widths.most_common(1)[0][0]
    fi = _column("fn_col", fn_col, names, width)
    li = _column("label_col", label_col, names, width)
    short = [(n, r) for n, r in lines if len(r) <= max(fi, li)]
    if short:
        n, r = short[0]
        raise ValueError(
            f"csv_labels: line {n} of {file} has {len(r)} field(s) ({short_repr(r)}), expected "
            f"at least {max(fi, li) + 1} (the file name in column {fi}, the label in column "
            f"{li}): a truncated or broken line ({len(short)} such line(s) in all)"
        )
    return [r[fi] for r in rows], _numbers_as_pandas_reads([r[li] for r in rows])


def _sniffed_delimiter(text: str) -> str:
    """The field separator of the first 50 lines of a CSV text among ',', ';', tab and '|'
    (`csv.Sniffer`); ',' when they do not tell (one column, or no consistent choice)."""
    sample = "".join(text[: 1 << 16].splitlines(keepends=True)[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


_TRUE, _FALSE = ("true", "1", "1.0"), ("false", "0", "0.0", "")


def read_valid_csv(
    file: str | Path,
    valid_col: Column,
    header: int | str | None = "infer",
    delimiter: str | None = None,
) -> list[bool]:
    """The flags of column `valid_col` of a CSV file read as `read_labels_csv` reads it
    (fastai v2's from_csv(valid_col=...): true rows are the validation set): True / 1 or
    False / 0 / blank, in any case; anything else is a ValueError naming the row."""
    rows = read_labels_csv(file, valid_col, valid_col, header, delimiter)[0]
    return valid_flags(rows, "valid_col", f" of {Path(file).name}")


def valid_flags(values: Sequence[Any], arg: str, where: str = "", hint: str = "") -> list[bool]:
    """A validation column as flags: bools, 1/0 (ints or floats), the text True/False or
    1/0 in any case; a blank cell, None or NaN is False (a row of the training set, as
    pandas reads a blank CSV cell). Anything else ("yes", "valid", 2) is a ValueError naming
    `arg`, the value and its data row (`where`: e.g. the file): fastai's bool() of a string
    makes every non-empty one, "False" included, a validation row."""
    flags = []
    for i, v in enumerate(values):
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or (isinstance(v, float) and math.isnan(v)):
            flags.append(False)
        elif isinstance(v, bool) or (isinstance(v, int | float) and v in (0, 1)):
            flags.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            flags.append(v.strip().lower() in _TRUE)
        else:
            raise ValueError(
                f"{arg}: expected True/False or 1/0 in every row, got {v!r} "
                f"({type(v).__name__}) in data row {i + 1}{where}{hint}"
            )
    return flags


_INT = re.compile(r"\s*[-+]?\d+\s*")
_FLOAT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _numbers_as_pandas_reads(column: list[str]) -> list[Any]:
    """A CSV column as pandas (fastai's from_csv) reads it: ints where every cell is an
    integer, floats where every cell is a number, else the text."""
    if column and all(_INT.fullmatch(v) for v in column):
        return [int(v) for v in column]
    if column and all(_FLOAT.fullmatch(v) for v in column):
        return [float(v) for v in column]
    return column


def items_from_table(
    path: str | Path,
    names: Iterable[object],
    labels: Iterable[object],
    folder: str | Path | None = None,
    suffix: str = "",
    valid_pct: float = 0.2,
    seed: int = 0,
    rule: str = "v2",
    valid: Sequence[bool] | None = None,
) -> ItemSplit:
    """Rows of a table (a CSV file, a DataFrame): file ``path/folder/(name + suffix)`` with
    its label (fastai's from_csv / from_df rule; `folder` None means `path` itself); random
    split, or the rows whose `valid` flag is true in validation (fastai v2's valid_col)."""
    if folder is not None and not isinstance(folder, str | Path):
        raise TypeError(f"folder: expected a folder name or None, got {folder!r}")
    if not isinstance(suffix, str):
        raise TypeError(f"suffix: expected a string such as '.jpg' or '', got {suffix!r}")
    root = check_path(path) / folder if folder is not None else check_path(path)
    if folder is not None and not root.is_dir() and root.parent.is_dir():
        there = sorted(p.name for p in root.parent.iterdir() if p.is_dir())
        raise MissingPathError(
            f"folder: expected the folder of path holding the images, {str(root)!r} does not "
            f"exist (the folders there: {shown_names(there) or 'none'})"
        )
    names = [f"{n}{suffix}" for n in _label_list(names, "fn_col")]
    return _items_with_labels(root, names, labels, valid_pct, seed, True, rule, valid)


# -- fastai v2's splitters and labellers (the DataBlock API) ---------------------------------

Splits = tuple[list[int], list[int]]


def _is_dataframe(items: object) -> bool:
    try:
        import pandas as pd
    except ImportError:
        return False
    return isinstance(items, pd.DataFrame)


class RandomSplitter:
    """fastai v2's ``RandomSplitter(valid_pct=0.2, seed=None)``: called on the items, a
    random permutation ``torch.randperm(len(items))`` cut at ``int(valid_pct * len(items))``,
    returned as (train indices, valid indices) = (perm[cut:], perm[:cut]): fastai's split for
    the same seed, in its order. Differs from fastai: a seed is used through a generator of its
    own (fastai calls ``torch.manual_seed(seed)``, which also reseeds everything drawn after);
    without a seed the permutation is drawn from torch's global RNG, as fastai's. In a
    DataBlock without a seed, the split is the one of ``RandomSplitter(seed=<the data seed>)``
    (see DataBlock.dataloaders)."""

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None) -> None:
        self.valid_pct = _check_valid_pct(valid_pct)
        self.seed = None if seed is None else _check_seed(seed)

    def split(self, n: int, seed: int | None) -> Splits:
        """The split of `n` items with `seed` (None: torch's global RNG)."""
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        perm = torch.randperm(n, generator=gen).tolist()
        cut = int(self.valid_pct * n)
        return perm[cut:], perm[:cut]

    def __call__(self, items: Sequence[Any]) -> Splits:
        return self.split(len(items), self.seed)

    def __repr__(self) -> str:
        return f"RandomSplitter(valid_pct={self.valid_pct}, seed={self.seed})"


def _names(name: str | Sequence[str], arg: str) -> list[str]:
    names = [name] if isinstance(name, str) else list(name) if isinstance(name, Iterable) else []
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{arg}: expected a folder name or a list of them, got {name!r}")
    return names


class GrandparentSplitter:
    """fastai v2's ``GrandparentSplitter(train_name='train', valid_name='valid')``: the items
    whose grandparent folder is named `train_name` (or one of a list of names) are the
    training set, `valid_name` the validation set; other items are in neither. Indices in
    item order, name after name for a list, as fastai."""

    def __init__(
        self, train_name: str | Sequence[str] = "train", valid_name: str | Sequence[str] = "valid"
    ) -> None:
        self.train_name = _names(train_name, "train_name")
        self.valid_name = _names(valid_name, "valid_name")

    def __call__(self, items: Sequence[Any]) -> Splits:
        grand = [Path(o).parent.parent.name for o in items]

        def idxs(names: list[str]) -> list[int]:
            return [i for n in names for i, g in enumerate(grand) if g == n]

        return idxs(self.train_name), idxs(self.valid_name)

    def __repr__(self) -> str:
        return f"GrandparentSplitter(train_name={self.train_name}, valid_name={self.valid_name})"


def _index_split(n: int, valid_idx: Sequence[int], arg: str) -> Splits:
    valid = [int(i) for i in valid_idx]
    bad = [i for i in valid if not 0 <= i < n]
    if bad:
        raise ValueError(f"{arg}: expected indices in [0, {n}) (one per item), got {bad[:5]}")
    return np.setdiff1d(np.arange(n), np.array(valid, dtype=np.int64)).tolist(), valid


class IndexSplitter:
    """fastai v2's ``IndexSplitter(valid_idx)``: the items at `valid_idx` (in that order) are
    the validation set, the others (ascending) the training set."""

    def __init__(self, valid_idx: Iterable[int]) -> None:
        if isinstance(valid_idx, str) or not isinstance(valid_idx, Iterable):
            raise TypeError(f"valid_idx: expected a list of item indices, got {valid_idx!r}")
        valid_idx = list(valid_idx.tolist() if hasattr(valid_idx, "tolist") else valid_idx)
        # whole numbers as floats too (np.where(df.fold == 1.0)[0].astype(float)), as fastai's
        wrong = [
            i for i in valid_idx
            if isinstance(i, bool) or not isinstance(i, Real) or not float(i).is_integer()
        ]  # fmt: skip
        if wrong:
            raise TypeError(
                f"valid_idx: expected integer item indices, got {len(wrong)} that are not: "
                f"{short_repr(wrong)}"
            )
        self.valid_idx = [int(i) for i in valid_idx]

    def __call__(self, items: Sequence[Any]) -> Splits:
        return _index_split(len(items), self.valid_idx, "valid_idx")

    def __repr__(self) -> str:
        shown = self.valid_idx[:8] + (["..."] if len(self.valid_idx) > 8 else [])
        return f"IndexSplitter({len(self.valid_idx)} indices: {shown})"


class FuncSplitter:
    """fastai v2's ``FuncSplitter(func)``: an item is in the validation set when `func(item)`
    is true, else in the training set (both ascending)."""

    def __init__(self, func: Callable[[Any], object]) -> None:
        if not callable(func):
            raise TypeError(f"func: expected a callable item -> bool, got {func!r}")
        self.func = func

    def __call__(self, items: Sequence[Any]) -> Splits:
        valid = [i for i, o in enumerate(items) if self.func(o)]
        return _index_split(len(items), valid, "func")

    def __repr__(self) -> str:
        return f"FuncSplitter({getattr(self.func, '__name__', self.func)!r})"


class ColSplitter:
    """fastai v2's ``ColSplitter(col='is_valid', on=None)`` for items that are the rows of a
    pandas DataFrame: a row is in the validation set when its value in column `col` (a name,
    or a position) is true (on=None), equals `on`, or is in `on` (a list)."""

    def __init__(self, col: str | int = "is_valid", on: object = None) -> None:
        if isinstance(col, bool) or not isinstance(col, str | int):
            raise TypeError(f"col: expected a column name or position, got {col!r}")
        self.col, self.on = col, on

    def __call__(self, items: Any) -> Splits:
        if not _is_dataframe(items):
            raise TypeError(
                "ColSplitter: expected the items to be a pandas DataFrame (a DataFrame source "
                f"with get_items=None), got {type(items).__name__}"
            )
        if isinstance(self.col, int):
            if not -items.shape[1] <= self.col < items.shape[1]:
                raise ValueError(
                    f"col: expected a column position below {items.shape[1]}, got {self.col}"
                )
            c = items.iloc[:, self.col]
        elif self.col in items.columns:
            c = items[self.col]
        else:
            raise ValueError(f"col: expected one of the columns {list(items.columns)}, "
                             f"got {self.col!r}")  # fmt: skip
        if self.on is None:
            hint = f"; ColSplitter({self.col!r}, on=value) takes the rows equal to value"
            flags = valid_flags(c.tolist(), "ColSplitter", f" of column {self.col!r}", hint)
            mask = np.array(flags, dtype=bool)
        elif isinstance(self.on, list | tuple | set):
            mask = c.isin(list(self.on)).values
        else:
            mask = (c == self.on).values
        return _index_split(len(items), np.flatnonzero(mask).tolist(), "col")

    def __repr__(self) -> str:
        return f"ColSplitter(col={self.col!r}, on={self.on!r})"


class EndSplitter:
    """fastai v2's ``EndSplitter(valid_pct=0.2, valid_last=True)`` for ordered items: the last
    ``int(valid_pct * n)`` items (the first with valid_last=False) are the validation set,
    both sets in item order. A cut of 0 items is refused either way, as `random_split`
    refuses it (fastai's ``idxs[:-0]`` then trains on nothing with valid_last=True, and
    validates on nothing with valid_last=False)."""

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True) -> None:
        self.valid_pct = _check_valid_pct(valid_pct)
        if self.valid_pct == 0:
            raise ValueError("valid_pct: expected a float in (0, 1), got 0")
        self.valid_last = check_bool("valid_last", valid_last)

    def __call__(self, items: Sequence[Any]) -> Splits:
        n = len(items)
        cut = int(self.valid_pct * n)
        if cut == 0:
            raise ValueError(
                f"valid_pct: {self.valid_pct} of {n} items is no validation item; use more "
                "items or a larger valid_pct"
            )
        idxs = list(range(n))
        return (idxs[:-cut], idxs[-cut:]) if self.valid_last else (idxs[cut:], idxs[:cut])

    def __repr__(self) -> str:
        return f"EndSplitter(valid_pct={self.valid_pct}, valid_last={self.valid_last})"


class MaskSplitter:
    """fastai v2's ``MaskSplitter(mask)``: the items where `mask` (a list of bools, one per
    item, or a bool numpy array / tensor / pandas Series) is true are the validation set."""

    def __init__(self, mask: Iterable[object]) -> None:
        if isinstance(mask, str) or not isinstance(mask, Iterable):
            raise TypeError(f"mask: expected one bool per item, got {short_repr(mask)}")
        values = mask.tolist() if hasattr(mask, "tolist") else list(mask)
        if not all(isinstance(v, bool | np.bool_) for v in values):
            raise TypeError(f"mask: expected one bool per item, got {short_repr(values)}")
        self.mask = [bool(v) for v in values]

    def __call__(self, items: Sequence[Any]) -> Splits:
        if len(self.mask) != len(items):
            raise ValueError(
                f"mask: expected {len(items)} flags (one per item), got {len(self.mask)}"
            )
        return _index_split(len(items), [i for i, v in enumerate(self.mask) if v], "mask")

    def __repr__(self) -> str:
        return f"MaskSplitter({sum(self.mask)} of {len(self.mask)} items in validation)"


class FileSplitter:
    """fastai v2's ``FileSplitter(fname)``: a text file of file names, one a line; the items
    whose name (``Path(item).name``) is one of them are the validation set. The file is read
    when the splitter is made, as fastai's."""

    def __init__(self, fname: str | os.PathLike) -> None:
        file = Path(fname).expanduser()
        if not file.is_file():
            raise MissingPathError(f"fname: expected a text file of file names, got {str(file)!r}")
        self.fname = file
        self.valid = {line.strip() for line in file.read_text().splitlines() if line.strip()}

    def __call__(self, items: Sequence[Any]) -> Splits:
        valid = [i for i, o in enumerate(items) if Path(o).name in self.valid]
        return _index_split(len(items), valid, "fname")

    def __repr__(self) -> str:
        return f"FileSplitter({str(self.fname)!r})"


class RandomSubsetSplitter:
    """fastai v2's ``RandomSubsetSplitter(train_sz, valid_sz, seed=None)``: random subsets of
    ``int(train_sz * n)`` training and ``int(valid_sz * n)`` validation items (the other
    items are in neither), from one ``torch.randperm(n)``: fastai's for the same seed (here
    through a generator of its own; no seed: torch's global RNG)."""

    def __init__(self, train_sz: float, valid_sz: float, seed: int | None = None) -> None:
        for name, v in (("train_sz", train_sz), ("valid_sz", valid_sz)):
            if isinstance(v, bool) or not isinstance(v, Real) or not 0 < float(v) < 1:
                raise ValueError(f"{name}: expected a float in (0, 1), got {v!r}")
        if float(train_sz) + float(valid_sz) > 1:
            raise ValueError(
                f"train_sz + valid_sz: expected at most 1, got {train_sz} + {valid_sz}"
            )
        self.train_sz, self.valid_sz = float(train_sz), float(valid_sz)
        self.seed = None if seed is None else _check_seed(seed)

    def __call__(self, items: Sequence[Any]) -> Splits:
        n = len(items)
        gen = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(n, generator=gen).tolist()
        n_train, n_valid = int(n * self.train_sz), int(n * self.valid_sz)
        return perm[:n_train], perm[n_train : n_train + n_valid]

    def __repr__(self) -> str:
        return (
            f"RandomSubsetSplitter(train_sz={self.train_sz}, valid_sz={self.valid_sz}, "
            f"seed={self.seed})"
        )


class TrainTestSplitter:
    """fastai v2's ``TrainTestSplitter(test_size=0.2, random_state=None, stratify=None,
    train_size=None, shuffle=True)``: scikit-learn's ``train_test_split`` of the item
    indices with these arguments (stratify: one label per item, to keep each class's share
    in both sets), so the same split as fastai's. Needs scikit-learn (fastai depends on it;
    this library does not: an ImportError says so when the splitter is made)."""

    def __init__(
        self,
        test_size: float | int | None = 0.2,
        random_state: int | None = None,
        stratify: Sequence[object] | None = None,
        train_size: float | int | None = None,
        shuffle: bool = True,
    ) -> None:
        try:
            from sklearn.model_selection import train_test_split
        except ImportError as e:
            raise ImportError(
                "TrainTestSplitter needs scikit-learn (pip install scikit-learn), as fastai's "
                "does; RandomSplitter(valid_pct, seed) splits without it"
            ) from e
        self._split = train_test_split
        self.kwargs = {
            "test_size": test_size,
            "random_state": random_state,
            "stratify": stratify,
            "train_size": train_size,
            "shuffle": check_bool("shuffle", shuffle),
        }

    def __call__(self, items: Sequence[Any]) -> Splits:
        train, valid = self._split(list(range(len(items))), **self.kwargs)
        return [int(i) for i in train], [int(i) for i in valid]

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.kwargs.items() if k != "stratify"}
        return f"TrainTestSplitter({shown}, stratified={self.kwargs['stratify'] is not None})"


def parent_label(o: str | os.PathLike) -> str:
    """fastai's labeller: the name of the item's parent folder."""
    return Path(o).parent.name


class RegexLabeller:
    """fastai v2's ``RegexLabeller(pat, match=False)``: the first group of `pat` searched in
    (match=True: matched at the start of) ``str(item)`` with '/' separators; no match is a
    ValueError naming the pattern and the item (fastai: an AssertionError). On a path this is
    the whole path: fastbook's pets read the name, ``using_attr(RegexLabeller(pat), 'name')``."""

    def __init__(self, pat: str | re.Pattern[str], match: bool = False) -> None:
        try:
            self.pat = re.compile(pat)
        except (TypeError, re.error) as e:
            raise ValueError(f"pat: expected a regular expression, got {pat!r} ({e})") from e
        if self.pat.groups < 1:
            raise ValueError(f"pat: expected a regular expression with a group, got {pat!r}")
        self.match = bool(match)

    def __call__(self, o: object) -> str:
        text = str(o).replace(os.sep, "/")
        m = (self.pat.match if self.match else self.pat.search)(text)
        if m is None or m.group(1) is None:
            raise ValueError(f"pat: the pattern '{self.pat.pattern}' does not "
                             f"{'match' if self.match else 'occur in'} '{text}'")  # fmt: skip
        return m.group(1)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat.pattern!r}, match={self.match})"


def _using_attr(f: Callable[[Any], Any], attr: str, x: object) -> Any:
    return f(getattr(x, attr))


def using_attr(f: Callable[[Any], Any], attr: str) -> Callable[[Any], Any]:
    """fastcore's ``using_attr(f, attr)``: a function x -> ``f(getattr(x, attr))`` (fastbook:
    ``using_attr(RegexLabeller(pat), 'name')`` labels a path by its file name)."""
    if not callable(f):
        raise TypeError(f"f: expected a callable, got {f!r}")
    if not isinstance(attr, str):
        raise TypeError(f"attr: expected an attribute name, got {attr!r}")
    return functools.partial(_using_attr, f, attr)


def describe_labeller(f: object) -> dict[str, Any] | None:
    """A JSON description of a labelling rule that `labeller_from` rebuilds (what an export
    keeps, so that its test_dl labels new files): `parent_label`, a `RegexLabeller`, and
    `using_attr` of one of them; None for another rule (a function of the user's: code is
    not exported)."""
    if f is parent_label:
        return {"rule": "parent_label"}
    if isinstance(f, RegexLabeller):
        flags = f.pat.flags & ~re.UNICODE  # a str pattern's default
        return {"rule": "regex", "pattern": f.pat.pattern, "flags": flags, "match": f.match}
    if isinstance(f, functools.partial) and f.func is _using_attr and len(f.args) == 2:
        inner = describe_labeller(f.args[0])
        if inner is not None and isinstance(f.args[1], str):
            return {"rule": "using_attr", "attr": f.args[1], "f": inner}
    return None


def labeller_from(description: dict[str, Any]) -> Callable[[Any], object]:
    """The labelling rule `description` (`describe_labeller`'s) describes; ValueError for
    one it cannot have made."""
    rule = description.get("rule") if isinstance(description, dict) else None
    if rule == "parent_label":
        return parent_label
    if rule == "regex":
        pat = re.compile(description["pattern"], int(description.get("flags", 0)))
        return RegexLabeller(pat, bool(description.get("match", False)))
    if rule == "using_attr":
        return using_attr(labeller_from(description["f"]), str(description["attr"]))
    raise ValueError(f"labeller: not a labelling rule this library describes: {description!r}")


def labels_of(
    items: Sequence[Path], labeller: Callable[[Any], object], classes: Sequence[str]
) -> list[int]:
    """The class index of each file by `labeller` (test_dl's with_labels); an item that is
    no file (an image in memory), or a label outside `classes`, is a ValueError."""
    if not all(isinstance(p, Path) for p in items):
        raise ValueError(
            "with_labels: labels come from the image files (their folder or name); "
            "test_items holds images in memory: pass with_labels=False"
        )
    index = {str(c): i for i, c in enumerate(classes)}
    labels, outside = [], []
    for p in items:
        raw = labeller(p)
        label = str(raw)
        if label not in index and _is_number(raw) and float(raw).is_integer():
            label = str(int(float(raw)))  # 1.0 for the class '1' (_label_texts)
        if label not in index:
            outside.append(f"{p.name} ({label!r})")
        labels.append(index.get(label, -1))
    if outside:
        raise ValueError(
            f"with_labels: {len(outside)} files have labels outside the vocab "
            f"{shown_names(classes, 20)}: {shown_names(outside)}"
        )
    return labels


class ColReader:
    """fastai v2's ``ColReader(cols, pref='', suff='')``: column `cols` (a name, or a position)
    of a row (a pandas Series, a namedtuple, a dict or a list), as
    ``f'{pref}{value}{suff}'`` when a prefix or suffix is given (a Path prefix gets a
    separator: ``ColReader(0, pref=path/'images')``), else the value itself. One column only,
    and no label_delim: this library reads one image and one label per row."""

    def __init__(
        self,
        cols: str | int | Sequence[str | int],
        pref: str | os.PathLike = "",
        suff: str = "",
        label_delim: str | None = None,
    ) -> None:
        check_label_delim(label_delim)
        if isinstance(cols, list | tuple):
            if len(cols) != 1:
                raise ValueError(f"cols: expected one column (one image or one label per row), "
                                 f"got {list(cols)!r}")  # fmt: skip
            cols = cols[0]
        if isinstance(cols, bool) or not isinstance(cols, str | int):
            raise TypeError(f"cols: expected a column name or position, got {cols!r}")
        if not isinstance(suff, str):
            raise TypeError(f"suff: expected a str, got {suff!r}")
        self.cols = cols
        self.pref = str(pref) + os.path.sep if isinstance(pref, os.PathLike) else str(pref)
        self.suff = suff

    def __call__(self, row: Any) -> Any:
        c = self.cols
        try:
            if isinstance(c, int):
                o = row.iloc[c] if hasattr(row, "iloc") else row[c]
            elif c in getattr(row, "_fields", ()):
                o = getattr(row, c)
            else:
                o = row[c]
        except (KeyError, IndexError) as e:  # fastai: a bare KeyError: 'fname'
            names = getattr(row, "_fields", None)
            if names is None and hasattr(row, "keys"):  # a pandas Series, a dict
                names = row.keys()
            has = f"; the row's columns are {list(names)}" if names is not None else ""
            raise ValueError(f"{self!r}: the row has no column {c!r}{has}") from e
        if not self.pref and not self.suff:
            return o
        return f"{self.pref}{o}{self.suff}"

    def __repr__(self) -> str:
        return f"ColReader({self.cols!r}, pref={self.pref!r}, suff={self.suff!r})"
