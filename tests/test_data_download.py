"""untar_data / download_url / extract_archive against a local HTTP server on 127.0.0.1."""

import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fastcore_ext.data import (
    NotAFolderError,
    URLs,
    download_images,
    download_url,
    extract_archive,
    untar_data,
)
from fastcore_ext.data.download import DownloadError, UnsafeArchiveError

FILES = {"pets/images/cat_1.txt": b"meow" * 100, "pets/images/dog_2.txt": b"woof" * 3000}
# download_images' routes (the bytes need not be images: verify_images judges them later);
# None: not served (404)
IMAGES = {"/img/a.jpg": b"jpeg" * 50, "/img/b.PNG": b"png" * 40, "/img/c": b"no suffix" * 9,
          "/img/missing.jpg": None, "/img/cut.jpg": b"cut" * 5000}  # fmt: skip


def _tar(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}
    cut: set[str] = set()
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        body = self.routes.get(self.path.split("?")[0])  # a query string is ignored
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.cut:  # the connection dies half way
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    _Handler.routes = {
        "/pets.tgz": _tar(FILES),
        "/pets2.tar.gz": _tar(FILES),
        "/pets3.zip": _zip(FILES),
        "/flat.tgz": _tar({"a.txt": b"a", "b/c.txt": b"c"}),
        "/big.tgz": _tar({"big/x.bin": bytes(range(256)) * 4000}, mode="w"),
        "/evil_dotdot.tgz": _tar({"ok.txt": b"x", "../escaped.txt": b"boo"}),
        "/evil_abs.tgz": _tar({"/tmp/fastcore_ext_abs_escape.txt": b"boo"}),
        "/evil_zip.zip": _zip({"ok.txt": b"x", "../../escaped.txt": b"boo"}),
        **{path: body for path, body in IMAGES.items() if body is not None},
    }
    _Handler.cut = {"/big.tgz", "/img/cut.jpg"}
    _Handler.hits = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["pets.tgz", "pets2.tar.gz", "pets3.zip"])
def test_download_extract_and_reuse(server, tmp_path, name):
    path = untar_data(f"{server}/{name}", dest=tmp_path, progress=False)
    assert path == tmp_path / name.split(".")[0]
    assert _tree(path) == {k.removeprefix("pets/"): v for k, v in FILES.items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # archive and temps gone
    hits = len(_Handler.hits)
    assert untar_data(f"{server}/{name}", dest=tmp_path) == path  # reused: no request
    assert len(_Handler.hits) == hits
    # fastai's path.ls(), as the lesson calls it on untar_data's folder and below it
    assert path.ls() == [path / "images"]
    assert (path / "images").ls() == [path / "images/cat_1.txt", path / "images/dog_2.txt"]


def test_second_call_needs_no_network(server, tmp_path):
    path = untar_data(f"{server}/pets.tgz", dest=tmp_path, progress=False)
    start = time.monotonic()
    assert untar_data("http://127.0.0.1:9/pets.tgz", dest=tmp_path) == path
    assert time.monotonic() - start < 1


def test_default_destination_is_the_data_folder(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCORE_EXT_DATA", str(tmp_path / "d"))
    path = untar_data(f"{server}/pets.tgz", progress=False)
    assert path == tmp_path / "d" / "pets" == URLs.path(f"{server}/pets.tgz")


def test_archive_without_single_top_folder(server, tmp_path):
    path = untar_data(f"{server}/flat.tgz", dest=tmp_path, progress=False, keep_archive=True)
    assert _tree(path) == {"a.txt": b"a", "b/c.txt": b"c"}
    assert (tmp_path / "flat.tgz").is_file()


def test_checksum_and_size(server, tmp_path):
    url = f"{server}/pets.tgz"
    good = hashlib.sha256(_Handler.routes["/pets.tgz"]).hexdigest()
    with pytest.raises(DownloadError, match="sha256 .* does not match the expected 0000"):
        untar_data(url, dest=tmp_path, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError, match="expected 5 bytes"):
        untar_data(url, dest=tmp_path, size=5, progress=False)
    assert list(tmp_path.iterdir()) == []
    size = len(_Handler.routes["/pets.tgz"])
    assert untar_data(url, dest=tmp_path, sha256=good, size=size, progress=False).is_dir()


def test_connection_cut_midway_leaves_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match="could not download"):
        untar_data(f"{server}/big.tgz", dest=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        untar_data(f"{server}/missing.tgz", dest=tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["evil_dotdot.tgz", "evil_abs.tgz", "evil_zip.zip"])
def test_escaping_members_are_refused(server, tmp_path, name):
    dest = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match="refused"):
        untar_data(f"{server}/{name}", dest=dest, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (dest / "ok.txt").exists()
    assert not Path("/tmp/fastcore_ext_abs_escape.txt").exists()
    assert not (dest / name.split(".")[0]).exists()
    assert not [p for p in dest.iterdir() if p.is_dir()]  # no half-extracted folder


def test_symlink_leading_outside_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("d/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside"
        tf.addfile(link)
    (tmp_path / "a.tar").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="symlink 'd/link'"):
        extract_archive(tmp_path / "a.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_placed_by_hand_is_used_offline(tmp_path):
    (tmp_path / "pets.tgz").write_bytes(_tar(FILES))
    path = untar_data("http://127.0.0.1:9/pets.tgz", dest=tmp_path, progress=False)
    assert _tree(path)["images/cat_1.txt"] == FILES["pets/images/cat_1.txt"]


def test_refused_connection_fails_fast_saying_what_to_do(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"offline.*put the file at .*pets.tgz"):
        untar_data(f"http://127.0.0.1:{port}/pets.tgz", dest=tmp_path, progress=False)
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_silent_server_times_out(tmp_path):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        start = time.monotonic()
        with pytest.raises(DownloadError, match="could not download"):
            untar_data(f"http://127.0.0.1:{s.getsockname()[1]}/x.tgz", dest=tmp_path, timeout=1)
        assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_unresolvable_host_fails_within_the_timeout(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="could not download"):
        untar_data("https://no-such-host.invalid/x.tgz", dest=tmp_path, timeout=2)
    assert time.monotonic() - start < 5


def test_progress_bar(server, tmp_path, capsys):
    download_url(f"{server}/pets.tgz", tmp_path / "p.tgz", progress=True)
    err = capsys.readouterr().err
    assert "p.tgz" in err and "100.0%" in err and err.endswith("\n")


def test_urls_are_fastais():
    assert URLs.PETS == "https://s3.amazonaws.com/fast-ai-imageclas/oxford-iiit-pet.tgz"
    assert URLs.MNIST_SAMPLE == "https://s3.amazonaws.com/fast-ai-sample/mnist_sample.tgz"
    assert URLs.IMAGENETTE_160 == "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    assert URLs.CIFAR == "https://s3.amazonaws.com/fast-ai-sample/cifar10.tgz"
    assert URLs.path(URLs.PETS, "/x").as_posix() == "/x/oxford-iiit-pet"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="url: expected an http"):
        untar_data("ftp://host/x.tgz", dest=tmp_path)
    with pytest.raises(ValueError, match="url: expected a URL ending in a file name"):
        untar_data("http://host/", dest=tmp_path)
    with pytest.raises(TypeError, match="url: expected a str"):
        untar_data(Path("x.tgz"), dest=tmp_path)
    with pytest.raises(ValueError, match="timeout: expected a positive"):
        download_url("http://127.0.0.1:9/x.tgz", tmp_path / "x", timeout=0)
    (tmp_path / "junk.tgz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        extract_archive(tmp_path / "junk.tgz", tmp_path / "junk")


# ---- download_images ---------------------------------------------------------------------------
def test_download_images_from_a_url_file(server, tmp_path, capsys):
    """The lesson's CSV of URLs: numbered files, extension from the URL, failures named and
    skipped, nothing half written, a second call fetches only what is missing."""
    lines = [f"{server}/img/a.jpg", "", f'  "{server}/img/b.PNG?w=10"  ', f"{server}/img/c",
             f"{server}/img/missing.jpg", f"{server}/img/cut.jpg",
             f"{server}/img/a.jpg"]  # fmt: skip
    urls = tmp_path / "urls_bears.csv"
    urls.write_text("\n".join(lines) + "\n")
    dest = tmp_path / "bears" / "black"
    got = download_images(urls, dest, max_pics=5)
    assert got == [dest / "00000000.jpg", dest / "00000001.png", dest / "00000002.jpg"]
    assert [f.read_bytes() for f in got] == [IMAGES["/img/a.jpg"], IMAGES["/img/b.PNG"],
                                             IMAGES["/img/c"]]  # fmt: skip
    assert sorted(p.name for p in dest.iterdir()) == [f.name for f in got]  # no .part file
    out = capsys.readouterr()
    assert "missing.jpg: HTTP 404" in out.out and "cut.jpg" in out.out
    assert "2 of 5 URLs failed" in out.out and "5/5 URLs" in out.err
    hits = list(_Handler.hits)
    assert download_images(urls, dest, max_pics=5, max_workers=0) == got
    again = _Handler.hits[len(hits) :]
    assert sorted(again) == ["/img/cut.jpg", "/img/missing.jpg"]  # only the missing ones


def test_download_images_from_a_list(server, tmp_path, capsys):
    got = download_images([f"{server}/img/c", f"{server}/img/a.jpg"], tmp_path / "d")
    assert [f.name for f in got] == ["00000000.jpg", "00000001.jpg"]
    assert "failed" not in capsys.readouterr().out
    # what a browser's list can hold besides http(s): data: URLs work, other text is named
    got = download_images(["data:image/png;base64,iVBORw0K", "not a url"], tmp_path / "e")
    assert got == [tmp_path / "e" / "00000000.jpg"]
    assert (tmp_path / "e" / "00000000.jpg").read_bytes() == b"\x89PNG\r\n"
    out = capsys.readouterr().out
    assert "could not download 'not a url'" in out and "1 of 2 URLs failed" in out


def test_download_images_offline_names_each_url(tmp_path, capsys):
    got = download_images(["http://127.0.0.1:9/x.jpg"], tmp_path / "d", timeout=2)
    assert got == []
    out = capsys.readouterr().out
    assert "could not download http://127.0.0.1:9/x.jpg" in out and "1 of 1 URLs failed" in out
    assert "If this machine is offline" not in out  # untar_data's hint is for one archive


def test_download_images_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="urls: expected a file of image URLs"):
        download_images(tmp_path / "nope.csv", tmp_path / "d")
    with pytest.raises(TypeError, match="urls: expected strings, got int 3"):
        download_images(["http://x/a.jpg", 3], tmp_path / "d")
    for kwargs, match in (
        ({"max_pics": 0}, "max_pics: expected a positive int, got 0"),
        ({"max_workers": -1}, "max_workers: expected an int >= 0, got -1"),
        ({"timeout": 0}, "timeout: expected a positive number of seconds, got 0"),
    ):
        with pytest.raises(ValueError, match=match):
            download_images(["http://x/a.jpg"], tmp_path / "d", **kwargs)


def test_download_images_a_malformed_url_is_one_failure(server, tmp_path, capsys):
    """A line 'http://[::1' aborted the whole call with urllib's 'Invalid IPv6 URL' before
    anything was downloaded."""
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{server}/img/a.jpg\nhttp://[::1\n{server}/img/c\n")
    got = download_images(urls, tmp_path / "d", max_workers=0)
    assert [f.name for f in got] == ["00000000.jpg", "00000002.jpg"]
    out = capsys.readouterr().out
    assert "could not download 'http://[::1': Invalid IPv6 URL" in out
    assert "1 of 3 URLs failed" in out


def test_dest_that_is_a_file_is_named(server, tmp_path):
    """download_images(dest=<a file>) and untar_data(dest=<a file>) ended in pathlib's
    FileExistsError / NotADirectoryError."""
    file = tmp_path / "afile.txt"
    file.write_text("x")
    with pytest.raises(NotAFolderError, match=f"dest: expected a folder, but '{file}' is a file"):
        download_images([f"{server}/img/a.jpg"], file)
    with pytest.raises(ValueError, match=f"dest: expected a folder, but '{file}' \\(a parent of "):
        download_images([f"{server}/img/a.jpg"], file / "bears")
    with pytest.raises(NotADirectoryError, match=f"dest: expected a folder, but '{file}' is"):
        untar_data(f"{server}/pets.tgz", dest=file)
    with pytest.raises(TypeError, match="dest: expected a folder \\(a str or Path\\), got 3"):
        untar_data(f"{server}/pets.tgz", dest=3)
    assert file.read_text() == "x"
