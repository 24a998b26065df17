"""Files a Learner writes and reads: the checkpoint format, atomic writes, RNG states,
checked loading.

`save_checkpoint` / `load_checkpoint` are what `Learner.save` / `Learner.load` call (as
fastai's save_model / load_model); `checkpoint_state` is what `save_checkpoint` writes, kept
in memory (`Learner.checkpoint()`). A checkpoint is a dict of tensors and plain values only
(it loads with `torch.load(weights_only=True)`): "format" (CHECKPOINT_FORMAT), "version",
"model" (the model's state_dict), "epoch" (epochs done by the fit that saved it),
"epochs_trained" (training epochs over every fit of the learner; absent in files written
before it, which then count "epoch"), "rng" (`rng_state()` at saving),
"data_seed" (the data's seed or None), "classes" (the data's class names, as str, when the
saving learner passed them; absent in files written before), "train_items" (`item_ids` of
the training items, when the saving learner's data has paths, sorted: int64 Tensor[n], 8
bytes an item, 59,200 bytes for 7,400 items; absent in files written before) and, with the
optimizer, "opt"
(its state_dict:
moments, one-cycle schedule, step counter), "opt_groups" (which layer group each of its
param groups belongs to and whether it takes weight decay: `layer_groups.GroupMap.to_dict()`;
absent in files written before `wd_bn_bias`, whose optimizers had one param group per layer
group) and "scaler" (fp16's GradScaler). Loading into a learner that groups its parameters
otherwise (another `wd_bn_bias`) rearranges the optimizer state (`layer_groups.
regroup_state_dict`, passed in as `regroup`). Resuming is
exact because nothing else is random: the data loaders derive the shuffle and augmentation
of data epoch e from (data seed, e) (a learner's fit draws data epochs after those of its
earlier fits: "epochs_trained" puts a resumed fit where the saving one was), and dropout
draws from torch's global generator, which loading puts back where the saving run had it.

`atomic_save(obj, path)` never leaves a half-written file under `path` (`files.atomic_write`:
the bytes go to a temporary file in the same folder, fsync'ed, then renamed over `path`). An
exception or a KeyboardInterrupt during the write removes the temporary file and leaves the
previous `path` as it was. A process killed outright (SIGKILL, power loss) can leave its
temporary file behind, never a damaged `path`; the next save to the same name removes
temporaries whose process is gone.

In a distributed run (fastcore_ext.distributed) rank 0 writes and the other processes return
at once, as fastai's save does, so that fastai's `if rank == 0: learn.save(...)` works (with a
barrier in the save, rank 0 waited for the others until the group's timeout);
`load_checkpoint` starts with a barrier, so a file every process saves and then loads is
complete before any reads it.

Integrity (fastcore_ext.integrity): `atomic_save` appends to the file the CRC-32 of every
tensor it holds; `load_file` compares the loaded tensors with them and checks the zip CRC-32
of every record, and refuses a damaged file with an error naming it and the first tensor that
differs. Files written before checksums were added still load: their tensors cannot be
checked one by one, only the zip CRC-32s.

Loading compares the file's "train_items" with the loading learner's validation items: where
some of them trained the checkpoint (the data was split anew: no seed, another seed, files
added or removed), a warning names how many, since metrics on them are optimistic.

`rng_state()` / `set_rng_state()` capture and restore every random generator the training
loop draws from (torch CPU, every CUDA device, Python's `random`, numpy's global generator)
as tensors and plain values only, so a checkpoint holding them loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import hashlib
import os
import pickletools
import random
import re
import textwrap
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from fastcore_ext.files import atomic_write
from fastcore_ext.integrity import DamagedFileError, add_checksums, verify
from fastcore_ext.ranks import barrier, is_main_process

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DamagedFileError",
    "atomic_save",
    "load_file",
    "rng_state",
    "set_rng_state",
    "model_file",
    "item_ids",
    "shown_classes",
    "checkpoint_state",
    "save_checkpoint",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = "fastcore_ext.checkpoint"  # the "format" entry of a Learner.save file
CHECKPOINT_VERSION = 1


def _serialize(obj: Any, f: BinaryIO) -> None:
    """Write `obj` to the open binary file `f` (torch's format). Tests replace this to fail
    halfway through a write."""
    torch.save(obj, f)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` with torch.save to `path` atomically (see the module docstring); create
    the folder if needed. Returns `path` as a Path. Under several processes rank 0 writes and
    the others return at once (no collective: rank 0 may save alone)."""

    path = Path(path)
    if not is_main_process():
        return path
    with atomic_write(path) as f:
        _serialize(obj, f)
        add_checksums(f, obj)
    return path


def load_file(path: str | os.PathLike, map_location: torch.device | str | None = None) -> Any:
    """torch.load(path, weights_only=True) with errors that name the file: FileNotFoundError
    when it is missing, ValueError when it is not a readable torch file (damaged, truncated,
    or holding pickled code), `integrity.DamagedFileError` (a ValueError) when a tensor or a
    record differs from what was written (named in the message; see the module doc: files
    without checksums, written before they were added, are checked by their zip CRC-32s
    only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is not a readable checkpoint: the file is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise ValueError(
            f"{path} is not a readable checkpoint: {_what_it_holds(path, e)} ({size:,} bytes)"
        ) from e
    verify(path, obj)
    return obj


def _what_it_holds(path: Path, e: Exception) -> str:
    """Why torch.load(weights_only=True) refused `path` with `e`, from the file's first bytes
    (an image, a text file, no zip archive) or the error: pickled code, or damage. torch's
    own message is not shown whole: it suggests weights_only=False, which runs the pickled
    code and cannot read an image or a damaged file anyway."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image, not a model file"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image, not a model file"
    if not head.startswith(b"PK\x03\x04"):
        try:
            text = b"\0" not in head and bool(head.decode("utf-8"))
        except UnicodeDecodeError:
            text = False
        kind = "a text file" if text else "not a torch file"
        return f"it is {kind} (torch.save writes a zip archive), or its start is damaged"
    if "weights only load failed" in str(e).lower():
        packages = pickled_packages(path) - {
            "torch",
            "collections",
            "builtins",
            "__builtin__",
            "_codecs",
        }
        named = f" (it names {', '.join(sorted(packages))})" if packages else ""
        fastai = (
            " (from fastai, learn.save(name, with_opt=False) writes a file learn.load reads "
            "here: the optimizer state is what holds fastai's objects)"
            if "fastcore" in packages or "fastai" in packages
            else ""
        )
        return (
            f"it holds pickled objects or code besides tensors{named}: a torch.save of a whole "
            "model, or fastai's learn.save / export. fastcore_ext loads with "
            "torch.load(weights_only=True) and never runs pickled code; save a state_dict "
            f"(torch.save(model.state_dict(), file)) to move weights between libraries{fastai}"
        )
    first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    said = textwrap.shorten(first[0], 200, placeholder="...") if first else ""
    return f"damaged or truncated ({type(e).__name__}: {said})"


def pickled_packages(file: Path) -> set[str]:
    """The top-level packages whose classes or functions a torch file's pickle names (its
    GLOBAL opcodes: torch.save's protocol 2), read without unpickling anything; what could be
    read of them when the file is damaged, nothing when it is not a torch zip file."""
    packages: set[str] = set()
    try:
        with zipfile.ZipFile(file) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                packages.add(str(arg).split(".")[0].split()[0])
    except Exception:  # zipfile.BadZipFile, StopIteration, ValueError of a cut pickle, ...
        pass
    return packages


def rng_state() -> dict[str, Any]:
    """The states of torch's CPU generator, of every CUDA device's generator (when CUDA is
    initialized), of Python's `random` and of numpy's global generator: tensors, ints,
    floats and lists only."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else None,
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` captured. CUDA states are restored when this process has
    as many CUDA devices as the saved state (else they are left alone)."""
    if not isinstance(state, dict) or "torch" not in state:
        raise ValueError(f"rng state should be a dict from rng_state(), got {type(state).__name__}")
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all([t.cpu() for t in cuda])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].cpu().numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )


def model_file(folder: Path, name: str | os.PathLike, arg: str = "name") -> Path:
    """folder/`name` (`name` with ~ expanded: an absolute path stands alone), with the suffix
    .pth added unless `name` has it; `arg` is the argument named in errors."""
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise TypeError(f"{arg} should be a non-empty str or Path, got {name!r}")
    file = Path(name).expanduser()
    if file.suffix != ".pth":
        file = file.with_name(file.name + ".pth")
    if os.path.isdir(folder / file):
        raise ValueError(f"{arg} should name a file, got {name!r}: {folder / file} is a folder")
    return folder / file


def item_ids(items: Sequence[Any], root: str | os.PathLike) -> torch.Tensor | None:
    """What identifies data items across processes and days: for each item (a path), the
    first 8 bytes of the BLAKE2b hash of its path relative to `root` (the data's path; an
    item outside it: its absolute path), as an int64 Tensor[n] in the items' order. A data
    folder moved elsewhere keeps its ids; the same file reached through another `root` does
    not. None when an item is not a str or PathLike."""
    if not all(isinstance(item, (str, os.PathLike)) for item in items):
        return None
    top = os.path.abspath(root)
    prefix = top.rstrip(os.sep) + os.sep
    ids = []
    for item in items:
        full = os.path.abspath(item)
        name = full[len(prefix) :] if full.startswith(prefix) else full
        digest = hashlib.blake2b(
            name.replace(os.sep, "/").encode("utf-8", "surrogateescape"), digest_size=8
        ).digest()
        ids.append(int.from_bytes(digest, "little", signed=True))
    return torch.tensor(ids, dtype=torch.int64)


def checkpoint_state(
    model: nn.Module,
    opt: torch.optim.Optimizer | None,
    epoch: int,
    data_seed: int | None,
    scaler: torch.amp.GradScaler | None = None,
    opt_groups: dict[str, list] | None = None,
    epochs_trained: int | None = None,
    classes: Sequence[Any] | None = None,
    train_items: torch.Tensor | None = None,
) -> dict[str, Any]:
    """A checkpoint (see the module docstring) as a dict, its tensors copied to the CPU (later
    training does not change it): the model, the epochs done, the RNG states, the data seed
    and, when `opt` is given, the optimizer's state (and the scaler's and the layout of its
    param groups, `opt_groups`, when given). epochs_trained: the learner's count over every
    fit (None: `epoch`). classes: the data's class names (stored as str; `load_checkpoint`
    compares them). train_items: `item_ids` of the training items (`load_checkpoint` looks
    for them among the validation items). `atomic_save` writes it."""
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "epoch": epoch,
        "epochs_trained": epoch if epochs_trained is None else epochs_trained,
        "rng": rng_state(),
        "data_seed": data_seed,
    }
    if classes is not None:
        state["classes"] = [str(c) for c in classes]
    if train_items is not None:
        state["train_items"] = torch.unique(train_items)  # sorted, each id once
    if opt is not None:
        state["opt"] = opt.state_dict()
        if opt_groups is not None:
            state["opt_groups"] = opt_groups
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
    return _cpu_copy(state)


def save_checkpoint(path: Path, *args: Any, **kwargs: Any) -> Path:
    """Write `checkpoint_state(*args, **kwargs)` to `path` atomically; returns `path`."""
    return atomic_save(checkpoint_state(*args, **kwargs), path)


def _cpu_copy(obj: Any) -> Any:
    """`obj` (dicts, lists and tuples of tensors and plain values) with every tensor copied
    to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def load_checkpoint(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer | None,
    strict: bool = True,
    with_rng: bool = True,
    data_seed: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    regroup: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    classes: Sequence[Any] | None = None,
    valid_items: torch.Tensor | None = None,
) -> tuple[int, int]:
    """Load the checkpoint at `path` (or a plain model state_dict file) into `model` and,
    when `opt` is given, the optimizer (a warning when the file has no optimizer state), the
    scaler and, with_rng, the RNG states. Returns the file's (epoch, epochs_trained) counts
    ((0, 0) for a bare state_dict; epochs_trained is the epoch count in older files).
    strict: the file must hold exactly the model's tensors with the same shapes,
    else a ValueError lists the differences; strict=False loads the tensors that match by
    name and shape, warns about the rest, and loads no optimizer state. `data_seed`: the
    loading learner's, compared with the saved one (a warning when they differ).
    `regroup(opt_state, file's "opt_groups" or None)` gives the optimizer state to load (the
    learner's `layer_groups.regroup_state_dict`). `classes`: the loading learner's class
    names, compared (as str) with the file's: a ValueError naming both lists when they differ
    (other classes, or the same in another order: the outputs would name the wrong classes),
    a warning with strict=False; files without classes (older ones) are not checked. Nothing
    is changed when an error is raised. Under several processes every process must call it:
    it waits for all of them first (a barrier), so that rank 0's save before it is complete."""
    barrier()
    device = next(iter(model.state_dict().values()), torch.empty(0)).device
    ckpt = load_file(path, map_location=device)
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
        model_state = ckpt.get("model")
    else:  # a bare state_dict
        model_state, ckpt = ckpt, {}
    _check_classes(ckpt.get("classes"), classes, path, strict)
    model_state, exact = _matching_state(model, model_state, path, strict)
    opt_state = ckpt.get("opt") if opt is not None else None
    if opt is not None and opt_state is None:
        warnings.warn(f"{path} holds no optimizer state; only the model was loaded", stacklevel=3)
    if opt_state is not None and not exact:
        warnings.warn(
            f"{path}: not every model tensor matched (strict=False), so the optimizer "
            f"state was not loaded",
            stacklevel=3,
        )
        opt_state = None
    if opt_state is not None:
        try:
            if regroup is not None:
                opt_state = regroup(opt_state, ckpt.get("opt_groups"))
            opt.load_state_dict(opt_state)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"{path}: the optimizer state does not fit this learner's optimizer "
                f"({type(opt).__name__}, {len(opt.param_groups)} param groups): {e}. "
                f"Load with with_opt=False to take the model only"
            ) from e
    model.load_state_dict(model_state, strict=False)
    if opt_state is not None and scaler is not None and "scaler" in ckpt:
        scaler.load_state_dict(ckpt["scaler"])
    seed_note = None
    if with_rng and "rng" in ckpt:
        set_rng_state(ckpt["rng"])
        saved_seed = ckpt.get("data_seed")
        if saved_seed is not None and data_seed is not None and data_seed != saved_seed:
            seed_note = (
                f"the learner that saved it had the data seed {saved_seed}, this one has "
                f"{data_seed}: a resumed fit will shuffle and augment differently"
            )
    _warn_about_data(path, ckpt.get("train_items"), valid_items, seed_note)
    epoch = int(ckpt.get("epoch", 0) or 0)
    return epoch, int(ckpt.get("epochs_trained", epoch) or 0)


def _warn_about_data(
    path: Path,
    train_items: torch.Tensor | None,
    valid_items: torch.Tensor | None,
    seed_note: str | None,
) -> None:
    """One warning: how many of the loading learner's validation items (`valid_items`, ids)
    the checkpoint trained on (its `train_items`), with `seed_note` after it; or the seed
    note alone; nothing when there is neither."""
    shared = 0
    if isinstance(train_items, torch.Tensor) and valid_items is not None and len(valid_items):
        shared = int(torch.isin(valid_items.cpu(), train_items.cpu()).sum())
    if shared:
        n = len(valid_items)
        message = (
            f"{path}: {shared} of {n} validation images ({shared / n:.0%}) were in the "
            f"checkpoint's training set: metrics on them are optimistic; build the data with "
            f"the same seed and files as the learner that saved it"
        )
        if seed_note is not None:
            message += f" ({seed_note})"
    elif seed_note is not None:
        message = f"{path}: {seed_note}"
    else:
        return
    warnings.warn(message, stacklevel=4)


def _check_classes(
    saved: list[str] | None, current: Sequence[Any] | None, path: Path, strict: bool
) -> None:
    """ValueError (strict) or a warning when the file's classes `saved` differ from the
    loading learner's `current`; nothing when either is unknown."""
    if saved is None or current is None:
        return
    current = [str(c) for c in current]
    if saved == current:
        return
    if sorted(saved) == sorted(current):
        how = "the same classes in another order"
    else:
        how = f"other classes ({len(saved)} in the file, {len(current)} here)"
    first = next(
        (i for i, (a, b) in enumerate(zip(saved, current, strict=False)) if a != b),
        min(len(saved), len(current)),
    )
    message = (
        f"{path} was saved by a learner with {how}: the file's classes are "
        f"{shown_classes(saved)}, this learner's {shown_classes(current)} (first difference "
        f"at index {first}), so the model's outputs would name the wrong classes"
    )
    if strict:
        raise ValueError(
            f"{message}. Build the data with the file's classes, or load(..., strict=False) to "
            f"load it anyway (e.g. to fine-tune on the new classes)"
        )
    warnings.warn(f"{message}; loaded anyway (strict=False)", stacklevel=4)


def shown_classes(classes: list[str], limit: int = 12) -> str:
    """A class list for a message: in full up to `limit` names, else the first ones and the
    count."""
    if len(classes) <= limit:
        return repr(classes)
    shown = repr(classes[:limit])[:-1]
    return f"{shown}, ... ({len(classes)} in all)]"


def _matching_state(
    model: nn.Module, state: Any, path: Path, strict: bool
) -> tuple[dict[str, torch.Tensor], bool]:
    """(the entries of `state` to load into `model`, whether the file fits it exactly);
    ValueError when strict and the file does not fit, or when no tensor of it does (nothing
    loaded)."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path} holds no model state_dict (a dict of name -> tensor), but {_what(state)}"
        )
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or shapes):
        return dict(state), True
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label} ({'; '.join(keys[:3])}{more})")
    summary = ", ".join(parts)
    if strict:
        raise ValueError(
            f"{path} does not fit this model ({type(model).__name__}): {summary}. It "
            f"was saved from another architecture or head (e.g. another number of "
            f"classes); load(..., strict=False) takes only the tensors that match"
        )
    matching = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not matching:
        prefixed = unexpected and all(k.startswith("module.") for k in unexpected)
        raise ValueError(
            f"{path}: no tensor of the file fits this model ({summary}), so strict=False "
            f"would load nothing"
            + (
                "; its names start with 'module.', as a DistributedDataParallel or "
                "DataParallel model's state_dict: strip that prefix ({k[7:]: v ...}) and load "
                "the result"
                if prefixed
                else ""
            )
        )
    warnings.warn(f"{path}: loading only the matching tensors; {summary}", stacklevel=4)
    return matching, False


def _what(x: Any) -> str:
    """What a loaded file holds, for the message refusing it as a state_dict."""
    if isinstance(x, torch.Tensor):
        return f"one tensor of shape {tuple(x.shape)}"
    if isinstance(x, dict):
        keys = list(x)[:5]
        inner = [k for k in ("state_dict", "model", "model_state_dict") if k in x]
        hint = f": torch.load it and pass its [{inner[0]!r}] entry" if inner else ""
        return f"a dict with keys {keys}{' ...' if len(x) > 5 else ''}{hint}"
    return f"a {type(x).__name__}"
