"""`untar_data(URLs.PETS)`: download, check, safely extract and reuse a data set archive.

Layout: the archive ``<name>.tgz`` is downloaded into the data folder (`data_dir()`, or
`dest`) as ``<name>.tgz.part-<pid>`` and renamed when complete and checked; it is extracted
into ``.<stem>.tmp-<pid>/`` and renamed to ``<stem>/``. A folder or archive under its final
name is therefore always complete, and a second call returns the folder without touching
the network. Checks: the byte count against the server's Content-Length, plus `size` and
`sha256` when the caller knows them. Extraction refuses members with absolute paths, ``..``,
links leading outside the folder, and device files, before writing anything.

`download_images(urls, dest)` (fastai's lesson 2): many image URLs, one file each, in threads,
each through `download_url` (so never half a file); the ones that fail are named, not fatal.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from numbers import Integral, Real
from pathlib import Path, PurePosixPath

from fastcore_ext.checks import check_positive_int

from .items import IMAGE_EXTENSIONS
from .paths import DataPath, check_folder, data_dir

__all__ = [
    "DownloadError",
    "URLs",
    "UnsafeArchiveError",
    "download_images",
    "download_url",
    "extract_archive",
    "untar_data",
]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")


class DownloadError(OSError):
    """A download failed (offline, unreachable, HTTP error, cut short, wrong size/checksum)."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder (or is a device file)."""


class URLs:
    """Locations of fastai's data sets (the same URLs as fastai's ``URLs``)."""

    S3 = "https://s3.amazonaws.com/fast-ai-"
    S3_IMAGE = f"{S3}imageclas/"
    S3_SAMPLE = f"{S3}sample/"

    PETS = f"{S3_IMAGE}oxford-iiit-pet.tgz"
    MNIST = f"{S3_IMAGE}mnist_png.tgz"
    MNIST_SAMPLE = f"{S3_SAMPLE}mnist_sample.tgz"
    MNIST_TINY = f"{S3_SAMPLE}mnist_tiny.tgz"
    CIFAR = f"{S3_SAMPLE}cifar10.tgz"
    CIFAR_100 = f"{S3_IMAGE}cifar100.tgz"
    IMAGENETTE = f"{S3_IMAGE}imagenette2.tgz"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette2-320.tgz"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof2-320.tgz"
    CALTECH_101 = f"{S3_IMAGE}caltech_101.tgz"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers.tgz"
    FOOD = f"{S3_IMAGE}food-101.tgz"

    @staticmethod
    def path(url: str, dest: str | os.PathLike | None = None) -> Path:
        """The folder `untar_data(url, dest)` extracts to (whether or not it exists yet)."""
        return _base(dest) / _stem(_file_name(url))


def _base(dest: str | os.PathLike | None) -> Path:
    return check_folder(dest, "dest") if dest is not None else data_dir()


def _file_name(url: str) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url: expected a str, got {type(url).__name__}")
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https", "file"):
        raise ValueError(f"url: expected an http(s):// or file:// URL, got {url!r}")
    name = PurePosixPath(urllib.parse.unquote(parsed.path)).name
    if not name:
        raise ValueError(f"url: expected a URL ending in a file name, got {url!r}")
    return name


def _stem(name: str) -> str:
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _resolve_host(url: str, timeout: float) -> None:
    """Name resolution bounded by `timeout` (getaddrinfo has no timeout of its own)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file" or not parsed.hostname:
        return
    result: list[BaseException | None] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(parsed.hostname, parsed.port or 443)
            result.append(None)
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=look_up, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise TimeoutError(f"looking up {parsed.hostname} took more than {timeout} s")
    if result[0] is not None:
        raise result[0]


class _Progress:
    """A one-line text progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, name: str, total: int | None, enabled: bool) -> None:
        self.name, self.total, self.enabled = name, total, enabled
        self.start = self.last = time.monotonic()

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < 0.1):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-6) / 1e6
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(30 * frac)
            line = (
                f"\r{self.name} |{bar:<30}| {100 * frac:5.1f}% "
                f"{done / 1e6:.1f}/{self.total / 1e6:.1f} MB {rate:.1f} MB/s"
            )
        else:
            line = f"\r{self.name} {done / 1e6:.1f} MB {rate:.1f} MB/s"
        sys.stderr.write(line + ("\n" if final else ""))
        sys.stderr.flush()


_OFFLINE_HINT = "If this machine is offline"


def _offline_help(url: str, archive: Path) -> str:
    return (
        f"{_OFFLINE_HINT}, download {url} elsewhere and put the file at {archive} "
        f"(or its extracted folder at {archive.parent / _stem(archive.name)}); the next call "
        "uses it without the network."
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path, size: int | None, sha256: str | None) -> None:
    if size is not None and path.stat().st_size != size:
        raise DownloadError(f"{path}: expected {size} bytes, got {path.stat().st_size}")
    if sha256 is not None:
        got = _sha256(path)
        if got != sha256.lower():
            raise DownloadError(f"{path}: sha256 {got} does not match the expected {sha256}")


def download_url(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download `url` to the file `dest` (written as ``<dest>.part-<pid>``, renamed when
    complete and checked; on any failure nothing is left behind). Returns `dest`.

    timeout: seconds for name lookup, connecting, and each wait for data.
    """
    dest = Path(dest)
    if not (isinstance(timeout, Real) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    try:
        try:
            _resolve_host(url, timeout)
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as f:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _Progress(dest.name, total, progress)
                done = 0
                while block := resp.read(1 << 16):
                    f.write(block)
                    done += len(block)
                    bar.update(done)
                bar.update(done, final=True)
        except urllib.error.HTTPError as e:
            raise DownloadError(f"could not download {url}: HTTP {e.code} {e.reason}") from e
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, IncompleteRead
            reason = getattr(e, "reason", None) or e
            raise DownloadError(
                f"could not download {url}: {type(e).__name__}: {reason}. "
                + _offline_help(url, dest)
            ) from e
        if total is not None and done != total:
            raise DownloadError(
                f"could not download {url}: the connection ended after {done} of {total} "
                "bytes. " + _offline_help(url, dest)
            )
        _check_file(part, size, sha256)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _image_urls(urls: str | os.PathLike | Iterable[str], max_pics: int) -> list[str]:
    """The first `max_pics` URLs of a file of one URL per line (what lesson 2's browser
    snippet saves; blank lines and surrounding spaces/quotes ignored) or of a list."""
    if isinstance(urls, str | os.PathLike):
        path = Path(urls)
        if not path.is_file():
            raise FileNotFoundError(
                f"urls: expected a file of image URLs (one per line) or a list of URLs, but "
                f"{path} is not a file"
            )
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    else:
        lines = list(urls)
        bad = [u for u in lines if not isinstance(u, str)]
        if bad:
            raise TypeError(f"urls: expected strings, got {type(bad[0]).__name__} {bad[0]!r}")
    cleaned = [u.strip().strip("'\"").strip() for u in lines]
    return [u for u in cleaned if u][:max_pics]


def _image_suffix(url: str) -> str:
    """The URL path's image extension (lower case), else '.jpg' (as fastai; also for a
    malformed URL, which then fails when it is fetched)."""
    try:
        path = urllib.parse.urlparse(url).path
    except ValueError:  # e.g. 'http://[::1': Invalid IPv6 URL
        return ".jpg"
    suffix = PurePosixPath(path).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ".jpg"


def download_images(
    urls: str | os.PathLike | Iterable[str],
    dest: str | os.PathLike,
    max_pics: int = 1000,
    max_workers: int = 8,
    timeout: float = 4.0,
) -> list[Path]:
    """Download the images of `urls` into the folder `dest` (fastai's lesson 2:
    ``download_images(path/file, dest, max_pics=200)``), as ``00000000.jpg``,
    ``00000001.png``, ... numbered in URL order, the extension taken from the URL (else .jpg).

    urls: a file of one URL per line (the lesson's browser snippet saves such a CSV), or a
    list of URL strings; the first `max_pics` are used. `max_workers` threads download at once
    (0: one after the other), each file through `download_url` (a temporary name renamed when
    complete, so no half file is left), `timeout` seconds per wait. A file already present
    under its number is kept, so a second call resumes. A URL that fails (HTTP error,
    unreachable, offline, cut short) is skipped; one line per failure and a summary are
    printed at the end, as fastai prints its errors. Returns the image files now in place, in
    URL order. Check what arrived with ``verify_images(dest, delete=True, max_size=500)``: a
    server may send a web page or a broken file under an image's URL.
    """
    check_positive_int("max_pics", max_pics)
    if isinstance(max_workers, bool) or not isinstance(max_workers, Integral) or max_workers < 0:
        raise ValueError(f"max_workers: expected an int >= 0, got {max_workers!r}")
    max_pics, max_workers = int(max_pics), int(max_workers)
    if not (isinstance(timeout, Real) and not isinstance(timeout, bool) and timeout > 0):
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    todo = _image_urls(urls, max_pics)
    dest = check_folder(dest, "dest")
    dest.mkdir(parents=True, exist_ok=True)
    files = [dest / f"{i:08d}{_image_suffix(u)}" for i, u in enumerate(todo)]
    lock = threading.Lock()
    done: list[int] = [0]

    def fetch(url: str, file: Path) -> str | None:
        try:
            if not file.is_file():
                download_url(url, file, timeout=timeout, progress=False)
            return None
        except DownloadError as e:
            return str(e).split(f" {_OFFLINE_HINT}")[0]  # the hint is for one archive
        except ValueError as e:  # not a URL urllib can open
            return f"could not download {url!r}: {e}"
        finally:
            with lock:
                done[0] += 1
                sys.stderr.write(f"\rdownload_images: {done[0]}/{len(todo)} URLs")
                sys.stderr.flush()

    if max_workers == 0:
        errors = [fetch(u, f) for u, f in zip(todo, files, strict=True)]
    else:
        pool = ThreadPoolExecutor(max_workers)
        try:
            errors = list(pool.map(fetch, todo, files))
        except BaseException:  # Ctrl-C: stop at once (files are complete or absent)
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    if todo:
        sys.stderr.write("\n")
    failed = [e for e in errors if e is not None]
    for e in failed:
        print(e)
    if failed:
        print(
            f"download_images: {len(failed)} of {len(todo)} URLs failed (listed above); "
            f"{len(todo) - len(failed)} images are in {dest}"
        )
    return [f for f, e in zip(files, errors, strict=True) if e is None]


def _check_member(root: Path, name: str, what: str) -> Path:
    """`root/name`, refusing absolute names, '..' and anything resolving outside `root`."""
    posix = name.replace("\\", "/")
    if (
        posix.startswith("/")
        or PurePosixPath(posix).is_absolute()
        or (len(posix) > 1 and posix[1] == ":")
    ):
        raise UnsafeArchiveError(f"{what}: member {name!r} has an absolute path; refused")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeArchiveError(f"{what}: member {name!r} contains '..'; refused")
    target = (root / posix).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{what}: member {name!r} would land outside {root}; refused")
    return target


def _check_tar(tf: tarfile.TarFile, root: Path, what: str) -> None:
    for m in tf.getmembers():
        target = _check_member(root, m.name, what)
        if m.isdev():
            raise UnsafeArchiveError(f"{what}: member {m.name!r} is a device file; refused")
        if m.issym():
            link = (target.parent / m.linkname).resolve()
            if PurePosixPath(m.linkname).is_absolute() or not link.is_relative_to(root.resolve()):
                raise UnsafeArchiveError(
                    f"{what}: symlink {m.name!r} -> {m.linkname!r} leads outside; refused"
                )
        if m.islnk():
            _check_member(root, m.linkname, what)


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a tar (plain, gz, bz2, xz) or zip `archive` so that its content is the folder
    `dest`: an archive holding one top folder gives that folder's content. Every member is
    checked before anything is written; the result appears under its name only when
    complete. Returns `dest`."""
    archive, dest = Path(archive), Path(dest)
    what = f"archive {archive}"
    if not archive.is_file():
        raise FileNotFoundError(f"archive: no file at {archive}")
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(tmp, info.filename, what)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                _check_tar(tf, tmp, what)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:
                    tf.extractall(tmp)
        else:
            raise ValueError(f"archive: {archive} is neither a tar nor a zip file")
        entries = list(tmp.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(content, dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(
            f"archive: {archive} is damaged ({e}); delete it and call untar_data again"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def untar_data(
    url: str,
    dest: str | os.PathLike | None = None,
    *,
    size: int | None = None,
    sha256: str | None = None,
    force_download: bool = False,
    keep_archive: bool = False,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download and extract the archive at `url` into ``<dest>/<stem>`` (dest defaults to
    the data folder, `$FASTCORE_EXT_DATA` or `$FASTCORE_EXT_HOME/data`) and return that
    folder. Present already: returned at once (no network). An archive already placed at
    ``<dest>/<file name>`` is used instead of downloading. Offline: a `DownloadError` within
    about `timeout` seconds saying where to put the file by hand.
    """
    name = _file_name(url)
    base = _base(dest)
    target = DataPath(base / _stem(name))
    if target.is_dir() and not force_download:
        return target
    archive = base / name
    if force_download or not archive.is_file():
        download_url(url, archive, size=size, sha256=sha256, timeout=timeout, progress=progress)
    else:
        _check_file(archive, size, sha256)
    extract_archive(archive, target)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return target
