"""Checksums of the files we write with torch.save, and their verification on loading.

A file torch.save writes is a zip archive: ``<archive>/data.pkl`` (the pickled structure),
one ``<archive>/data/<n>`` record per tensor storage, and a few small records, each with the
CRC-32 of its bytes in the zip directory. torch.load checks none of them, so a flipped byte in
a tensor's data loads silently as a different weight.

`add_checksums(f, obj)` appends one more record to such an archive,
``<archive>/fastcore_ext_checksums.json``: the CRC-32 of the bytes of every tensor in `obj`
(found through nested dicts, lists and tuples), by its path (``model/0.weight``,
``opt/state/3/exp_avg``). torch.load ignores the record, so the file still loads anywhere.
`verify(path, obj)` compares the loaded tensors with it and then checks the zip CRC-32 of
every record (the pickled structure and the small records included), and raises
`DamagedFileError` naming the file and the first tensor (or record) that differs.

A file without the record (written before checksums were added, or by plain torch.save)
cannot be checked tensor by tensor; its zip CRC-32s are still checked.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["CHECKSUM_RECORD", "DamagedFileError", "add_checksums", "tensor_checksums", "verify"]

CHECKSUM_RECORD = "fastcore_ext_checksums.json"  # name of the record inside the archive
_FORMAT = "fastcore_ext.checksums"
_VERSION = 1


class DamagedFileError(ValueError):
    """A saved file whose bytes differ from what was written. The message names the file and
    the first tensor or record that differs."""


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) for every tensor in nested dicts, lists and tuples, in order."""
    if isinstance(obj, torch.Tensor):
        yield prefix or "<root>", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}" if prefix else str(i))


def _crc32(t: torch.Tensor) -> int:
    """CRC-32 of the bytes of `t`'s elements in row-major order (any device, any dtype)."""
    flat = t.detach().resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
    return zlib.crc32(flat.view(torch.uint8).numpy())


def tensor_checksums(obj: Any) -> dict[str, int]:
    """{path: CRC-32 of the tensor's bytes} for every tensor in `obj` (see the module doc)."""
    return {name: _crc32(t) for name, t in _tensors(obj)}


def _archive_name(z: zipfile.ZipFile) -> str:
    first = z.namelist()[0]
    return first.split("/", 1)[0]


def add_checksums(f: BinaryIO, obj: Any) -> None:
    """Append the checksum record of `obj`'s tensors to `f`, a readable and writable file
    holding what ``torch.save(obj, f)`` just wrote."""
    record = {"format": _FORMAT, "version": _VERSION, "crc32": tensor_checksums(obj)}
    f.seek(0)
    with zipfile.ZipFile(f, "a") as z:
        z.writestr(f"{_archive_name(z)}/{CHECKSUM_RECORD}", json.dumps(record))


def _read_record(z: zipfile.ZipFile, path: Path) -> dict[str, int] | None:
    name = f"{_archive_name(z)}/{CHECKSUM_RECORD}"
    try:
        raw = z.read(name)
    except KeyError:
        return None  # an older file: nothing to compare the tensors with
    except (zipfile.BadZipFile, zlib.error) as e:
        raise DamagedFileError(f"{path} is damaged: its checksum record is unreadable ({e})") from e
    try:
        record = json.loads(raw)
        crcs = record["crc32"]
        if record.get("format") != _FORMAT or not isinstance(crcs, dict):
            raise ValueError(f"unexpected content {str(record)[:80]!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise DamagedFileError(f"{path} is damaged: its checksum record is invalid ({e})") from e
    return crcs


def verify(path: str | os.PathLike, obj: Any) -> None:
    """Check `obj`, just loaded from `path`, against the checksums recorded in the file, then
    the zip CRC-32 of every record of the file. Raises DamagedFileError naming the file and
    the first tensor (in the order they were saved) or record that differs, or saying the
    archive cannot be read (zipfile's own errors on a damaged directory are many: a
    UnicodeDecodeError of a record name, a NotImplementedError of a "zip version")."""
    try:
        _verify(Path(path), obj)
    except DamagedFileError:
        raise
    except Exception as e:
        raise DamagedFileError(
            f"{path} is damaged: its zip archive is unreadable ({type(e).__name__}: {e}); "
            "nothing was loaded from it"
        ) from e


def _verify(path: Path, obj: Any) -> None:
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DamagedFileError(f"{path} is damaged: not a readable zip archive ({e})") from e
    with z:
        expected = _read_record(z, path)
        if expected is not None:
            loaded = tensor_checksums(obj)
            differ = [
                name for name, crc in expected.items() if name in loaded and loaded[name] != crc
            ]
            missing = [name for name in expected if name not in loaded]
            extra = [name for name in loaded if name not in expected]
            if differ or missing or extra:
                if differ:
                    first = f"tensor {differ[0]!r} differs from the one saved"
                elif missing:
                    first = f"tensor {missing[0]!r} was saved but is missing"
                else:
                    first = f"tensor {extra[0]!r} was not saved but is there"
                raise DamagedFileError(
                    f"{path} is damaged: {first} ({len(differ)} of {len(expected)} tensors "
                    f"differ, {len(missing)} missing, {len(extra)} unexpected); nothing was "
                    "loaded from it"
                )
        try:
            bad = z.testzip()
        except (zipfile.BadZipFile, OSError, zlib.error) as e:
            msg = f"{path} is damaged: its zip records are unreadable ({e})"
            raise DamagedFileError(msg) from e
        if bad is not None:
            raise DamagedFileError(
                f"{path} is damaged: record {bad!r} of the archive fails its CRC-32 check; "
                "nothing was loaded from it"
            )
