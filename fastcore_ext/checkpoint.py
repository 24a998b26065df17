"""Files a Learner writes and reads: atomic writes, RNG states, checked loading.

`atomic_save(obj, path)` never leaves a half-written file under `path`: the bytes go to a
temporary file in the same folder (``.<name>.<pid>.<random>.tmp``), are flushed and
fsync'ed, and the temporary file is renamed over `path` with `os.replace` (atomic on POSIX
and Windows). An exception or a KeyboardInterrupt during the write removes the temporary
file and leaves the previous `path` as it was. A process killed outright (SIGKILL, power
loss) can leave its temporary file behind, never a damaged `path`; the next save to the same
name removes temporaries whose process is gone.

In a distributed run (fastcore_ext.distributed) every process calls `atomic_save`; rank 0
writes and the others wait for it at a barrier, so that any process can read the file next.

Integrity (fastcore_ext.integrity): `atomic_save` appends to the file the CRC-32 of every
tensor it holds; `load_file` compares the loaded tensors with them and checks the zip CRC-32
of every record, and refuses a damaged file with an error naming it and the first tensor that
differs. Files written before checksums were added still load: their tensors cannot be
checked one by one, only the zip CRC-32s.

`rng_state()` / `set_rng_state()` capture and restore every random generator the training
loop draws from (torch CPU, every CUDA device, Python's `random`, numpy's global generator)
as tensors and plain values only, so a checkpoint holding them loads with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from fastcore_ext.integrity import DamagedFileError, add_checksums, verify

__all__ = ["DamagedFileError", "atomic_save", "load_file", "rng_state", "set_rng_state"]


def _serialize(obj: Any, f: BinaryIO) -> None:
    """Write `obj` to the open binary file `f` (torch's format). Tests replace this to fail
    halfway through a write."""
    torch.save(obj, f)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files next to `path` left by processes that died."""
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` with torch.save to `path` atomically (see the module docstring); create
    the folder if needed. Returns `path` as a Path. Under several processes: rank 0 writes,
    every process returns once the file is in place."""
    from fastcore_ext.distributed import barrier, is_main_process  # (it imports the callbacks)

    path = Path(path)
    if not is_main_process():
        barrier()
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w+b") as f:
            _serialize(obj, f)
            add_checksums(f, obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # an error or a KeyboardInterrupt: the old file stays, no temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    barrier()
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
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise ValueError(
            f"{path} is not a readable checkpoint (damaged, truncated, or not written by "
            f"fastcore_ext: it must load with torch.load(weights_only=True)): {e}"
        ) from e
    verify(path, obj)
    return obj


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
