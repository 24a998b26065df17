"""JPEG decoding on the GPU (fastcore_ext.data.device_decode): the choice of device, the
split of a batch into encoded JPEGs and CPU-decoded files, the per-file fallback, unreadable
files, the loader and the bunch with a GPU decoder.

On the CPU the device decoder is injected (`JpegBatchDecoder(..., decode_jpegs=...)`):
TorchCodec's own decode_jpeg on the CPU, or one that rejects chosen files, so everything but
nvJPEG itself runs here. The CUDA tests (skipped without a GPU on which TorchCodec decodes
JPEG) compare nvJPEG with the CPU decoder.

Tolerance GPU vs CPU: the mean absolute difference per channel below 2 levels (of 255), with
shapes equal. nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's (which upsamples
4:2:0 chroma with its "fancy" triangle filter), so single pixels at sharp colour edges differ
by more than a few levels, while a wrong orientation, channel order or crop moves the mean
by tens. 2 is torchvision's bound for the same comparison (its decode_jpeg CUDA tests).
After presizing, the GPU path resizes in float32 and rounds: within 1 level of the CPU's
uint8 resize of the same pixels (checked exactly on the CPU below).
"""

import io
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    DeviceDataLoader,
    ImageDataBunch,
    ImageDataset,
    demo_dataset,
    items_from_folder,
    presize,
)
from fastcore_ext.data import device_decode as dd
from fastcore_ext.data.loader import decode_readable

P = 24  # presize
EXPECTED = "decode_device: expected None, 'cpu' or 'cuda'"
CUDA_JPEG = dd.cuda_jpeg_support() if torch.cuda.is_available() else "no CUDA device"
needs_cuda_jpeg = pytest.mark.skipif(
    bool(CUDA_JPEG), reason=f"no JPEG decoding on CUDA here: {CUDA_JPEG}"
)


def cpu_decode_jpegs(data, device):
    """TorchCodec's decode_jpeg on the CPU in place of nvJPEG: the device path, run here."""
    from torchcodec.decoders import decode_jpeg

    return [decode_jpeg(d, mode="RGB") for d in data]


class Rejecting:
    """cpu_decode_jpegs, except that a call containing a file of `reject` (by its bytes)
    raises as nvJPEG does; records the size of each call."""

    def __init__(self, reject: set[bytes]) -> None:
        self.reject, self.calls = reject, []

    def __call__(self, data, device):
        self.calls.append(len(data))
        if any(bytes(d.numpy()) in self.reject for d in data):
            raise RuntimeError("nvjpegDecode failed: unsupported")
        return cpu_decode_jpegs(data, device)


def _smooth(rng, h, w):
    """A random smooth RGB picture (H, W, 3) uint8: JPEG keeps it close."""
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@pytest.fixture
def files(tmp_path):
    """{kind: path}: JPEGs (4:2:0, 4:4:4, grayscale, progressive, EXIF-rotated, odd size),
    PNG, WebP, a truncated JPEG, a text file named .jpg."""
    rng = np.random.default_rng(0)
    out = {}

    def save(name, arr, **kw):
        p = tmp_path / name
        Image.fromarray(arr).save(p, **kw)
        out[name.split(".")[0]] = p

    save("rgb420.jpg", _smooth(rng, 45, 60), quality=90)
    save("rgb444.jpg", _smooth(rng, 40, 40), quality=95, subsampling=0)
    save("gray.jpg", _smooth(rng, 30, 50)[..., 0])
    save("progressive.jpg", _smooth(rng, 50, 35), quality=90, progressive=True)
    save("odd.jpg", _smooth(rng, 37, 53), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    save("exif6.jpg", _smooth(rng, 30, 60), quality=90, exif=exif.tobytes())
    save("png.png", _smooth(rng, 33, 44))
    save("webp.webp", _smooth(rng, 28, 30), lossless=True)
    truncated = tmp_path / "truncated.jpg"
    data = (tmp_path / "rgb420.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out["truncated"] = truncated
    text = tmp_path / "text.jpg"
    text.write_text("this is not an image\n")
    out["text"] = text
    return out


# -- the choice of device ---------------------------------------------------------------------
def test_choice_of_decode_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)

    def yes(d):
        return ""

    def no(d):
        return "no nvJPEG in this build"

    pick = dd.resolve_decode_device
    assert pick(None, cpu, yes) == cpu  # batches on the CPU: decode there
    assert pick(None, cuda, yes) == cuda
    assert pick(None, cuda, no) == cpu  # automatic: falls back quietly
    assert pick("cpu", cuda, yes) == cpu and pick(torch.device("cpu"), cuda, yes) == cpu
    assert pick("cuda", cuda, yes) == cuda and pick("cuda:0", cpu, yes) == cuda
    with pytest.raises(ValueError, match="decode_device: 'cuda' requested, but JPEG decoding on"):
        pick("cuda", cuda, no)
    with pytest.raises(ValueError, match="no nvJPEG in this build; pass decode_device='cpu'"):
        pick("cuda", cpu, no)
    for bad in ("gpu", "mps", "", "cuda:x"):
        with pytest.raises(ValueError, match=f"{EXPECTED}, got {bad!r}"):
            pick(bad, cpu, yes)
    for bad in (3, True, ["cuda"]):
        with pytest.raises(TypeError, match="decode_device: expected None, 'cpu', 'cuda' or a"):
            pick(bad, cpu, yes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer without a GPU")
def test_support_says_why_not_without_a_gpu():
    assert dd.cuda_jpeg_support() == "torch.cuda.is_available() is False"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("dd") / "demo", n_per_class=4, size=32)


def test_bunch_decode_device_argument(root):
    b = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, device="cpu")
    assert b.decode_device == torch.device("cpu") and b.train_dl.decoder is None
    b = ImageDataBunch.from_folder(root, size=16, bs=4, num_workers=0, decode_device="cpu")
    assert b.decode_device == torch.device("cpu")
    with pytest.raises(ValueError, match=f"{EXPECTED}, got 'gpu'"):
        ImageDataBunch.from_folder(root, size=16, bs=4, decode_device="gpu")
    if not CUDA_JPEG:
        return
    with pytest.raises(ValueError, match="decode_device: 'cuda' requested, but JPEG decoding"):
        ImageDataBunch.from_folder(root, size=16, bs=4, device="cpu", decode_device="cuda")


# -- read_batch and the decoder on the CPU ----------------------------------------------------
def test_read_batch_keeps_complete_jpegs_encoded(files):
    items = list(files.values())
    batch = dd.read_batch(items, range(len(items)), P, "crop")
    names = list(files)
    assert [names[i] for i in batch.jpeg_idx] == [
        "rgb420", "rgb444", "gray", "progressive", "odd", "exif6",
    ]  # fmt: skip
    assert [names[i] for i in batch.cpu_idx] == ["png", "webp"]
    assert [names[i] for i in batch.bad] == ["truncated", "text"]
    assert [min(img.shape[:2]) for img in batch.cpu_images] == [P, P]  # whole, short side P
    assert batch.idx == list(range(len(items))) and batch.u is None
    for i, data in zip(batch.jpeg_idx, batch.jpeg_data, strict=True):
        assert bytes(data.numpy()) == items[i].read_bytes()


def test_read_batch_does_not_send_a_decompression_bomb_to_the_gpu(tmp_path, monkeypatch):
    """A JPEG whose header declares more than twice PIL.Image.MAX_IMAGE_PIXELS is unreadable
    before it reaches nvJPEG, as on the CPU path (here 1200 x 1000 against a limit lowered to
    500,000)."""
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    Image.fromarray(np.zeros((1000, 1200, 3), np.uint8)).save(big)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500_000)
    batch = dd.read_batch([big, small], [0, 1], P, "crop")
    assert batch.bad == [0] and batch.jpeg_idx == [1]


@pytest.mark.parametrize("method", ["crop", "squish"])
def test_device_path_equals_the_cpu_decode_within_one_level(files, method):
    items = list(files.values())
    idx = list(range(len(items)))
    decoder = dd.JpegBatchDecoder("cpu", decode_jpegs=cpu_decode_jpegs)
    x, kept, bad, _, _ = decoder.decode_files(items, idx, P, method)
    ex, ekept, ebad, _, _ = decode_readable(items, idx, P, method)
    assert kept == ekept and bad == ebad and x.dtype == torch.uint8
    assert (x.int() - ex.int()).abs().max() <= 1  # float resize, rounded, vs the uint8 resize
    png = kept.index(list(files).index("png"))  # decoded on the CPU by read_batch: exact
    torch.testing.assert_close(x[png], ex[png], rtol=0, atol=0)


def test_device_path_cuts_the_same_windows_and_packs_the_same_whole_images(tmp_path):
    """Training draws and whole=True (a cache to fill): the windows and the whole images of
    the device path are those of the CPU path, within the float resize's one level."""
    rng = np.random.default_rng(3)
    items = []
    for k, (h, w) in enumerate([(30, 60), (60, 30), (24, 24), (20, 80)]):
        path = tmp_path / f"im{k}.jpg"
        Image.fromarray(_smooth(rng, h, w)).save(path, quality=95)
        items.append(path)
    u = np.array([0.0, 0.999, 0.5, 0.3])
    decoder = dd.JpegBatchDecoder("cpu", decode_jpegs=cpu_decode_jpegs)
    got = decoder.decode_files(items, range(4), P, "crop", u, whole=True)
    want = decode_readable(items, range(4), P, "crop", u, whole=True)
    assert got.kept == want.kept == [0, 1, 2, 3] and got.bad == want.bad == []
    assert torch.equal(got.shapes, want.shapes)
    assert (got.x.int() - want.x.int()).abs().max() <= 1
    assert (got.packed.int() - want.packed.int()).abs().max() <= 1
    centre = decoder.decode_files(items, range(4), P, "crop")
    assert centre.shapes is None and centre.packed is None
    assert not torch.equal(centre.x[0], got.x[0])  # u = 0: the left end, not the centre


def test_float_resize_within_one_level_of_the_uint8_resize():
    rng = np.random.default_rng(1)
    for h, w in [(375, 500), (37, 53), (24, 24), (10, 90)]:
        img = torch.from_numpy(_smooth(rng, h, w)).permute(2, 0, 1)
        for method in ("crop", "squish"):
            want = presize(img, P, method)
            got = presize(img.float(), P, method).round_().clamp_(0, 255).to(torch.uint8)
            assert (got.int() - want.int()).abs().max() <= 1, (h, w, method)


def test_a_file_the_device_rejects_is_decoded_on_the_cpu(files):
    items = [files[k] for k in ("rgb420", "progressive", "odd", "truncated", "gray")]
    rejecting = Rejecting({files["progressive"].read_bytes()})
    decoder = dd.JpegBatchDecoder("cpu", decode_jpegs=rejecting)
    x, kept, bad, _, _ = decoder.decode_files(items, range(5), P, "crop")
    assert rejecting.calls == [4, 1, 1, 1, 1]  # the batch, then file by file
    assert kept == [0, 1, 2, 4] and bad == [3]
    ex, _, _, _, _ = decode_readable(items, [1], P, "crop")
    torch.testing.assert_close(x[1], ex[0], rtol=0, atol=0)  # the CPU's decode, exactly


def test_an_unreadable_file_the_device_rejects_is_reported(files, tmp_path):
    """A file that looks complete (SOI ... EOI) but is not a JPEG inside: the device decoder
    rejects it, the CPU decoder too, so it is reported unreadable, not raised."""
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8\xff" + b"garbage" * 20 + b"\xff\xd9")
    items = [files["rgb420"], fake]
    decoder = dd.JpegBatchDecoder("cpu", decode_jpegs=Rejecting({fake.read_bytes()}))
    x, kept, bad, _, _ = decoder.decode_files(items, [0, 1], P, "crop")
    assert kept == [0] and bad == [1] and x.shape == (1, P, P, 3)


def test_an_empty_batch_and_a_batch_without_jpegs(files):
    calls = Rejecting(set())
    decoder = dd.JpegBatchDecoder("cpu", decode_jpegs=calls)
    x, kept, bad, _, _ = decoder.decode_files([], [], P, "crop")
    assert x.shape == (0, P, P, 3) and kept == [] and bad == []
    x, kept, bad, _, _ = decoder.decode_files([files["png"], files["text"]], [0, 1], P, "crop")
    assert x.shape == (1, P, P, 3) and kept == [0] and bad == [1] and calls.calls == []


# -- the loader with a device decoder ---------------------------------------------------------
@pytest.fixture
def broken_split(root, tmp_path):
    split = items_from_folder(root)
    items = []
    for k, p in enumerate(split.valid_items):
        q = tmp_path / "v" / f"{k:02d}_{p.name}"
        q.parent.mkdir(exist_ok=True)
        shutil.copy(p, q)
        items.append(q)
    data = items[2].read_bytes()
    items[2].write_bytes(data[: len(data) // 3])
    items[5].write_text("not an image")
    png = items[7].with_suffix(".png")
    Image.open(items[7]).save(png)
    items[7] = png
    return items, split.valid_labels, split.classes


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_with_a_device_decoder(broken_split, tmp_path, num_workers):
    from fastcore_ext.data import DecodedCache

    items, labels, classes = broken_split

    def loader(decoder, cache=None):
        ds = ImageDataset(items, labels, classes, P, "crop", cache)
        return DeviceDataLoader(
            ds, 4, train=False, size=16, device=torch.device("cpu"), seed=0,
            num_workers=num_workers, decoder=decoder,
        )  # fmt: skip

    def collect(dl):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            xs, ys = zip(*dl.uint8_batches(0), strict=True)
        return torch.cat(xs), torch.cat(ys), [w for w in rec if "unreadable" in str(w.message)]

    want_x, want_y, _ = collect(loader(None))
    cache = DecodedCache(items, P, "crop", folder=tmp_path / "cache")
    dl = loader(dd.JpegBatchDecoder("cpu", decode_jpegs=cpu_decode_jpegs), cache)
    assert "JPEG decoding on cpu" in repr(dl)
    x, y, rec = collect(dl)
    assert len(rec) == 1 and "skipped 2 unreadable" in str(rec[0].message)
    assert all(str(items[k]) in str(rec[0].message) for k in (2, 5))
    assert torch.equal(y, want_y) and (x.int() - want_x.int()).abs().max() <= 1
    assert cache.complete and cache.bad.tolist() == [2, 5]
    assert dl.bad_items == [items[2], items[5]]
    cached_x, cached_y, rec = collect(dl)  # the next pass reads what the decoder wrote
    assert rec == []  # and names nothing again
    assert torch.equal(cached_x, x) and torch.equal(cached_y, y)
    dl.close()


# -- on the GPU ---------------------------------------------------------------------------------
@needs_cuda_jpeg
def test_nvjpeg_equals_the_cpu_decode_within_tolerance(files):
    from torchcodec.decoders import decode_jpeg

    jpegs = [k for k in files if k not in ("png", "webp", "truncated", "text")]
    data = [torch.frombuffer(bytearray(files[k].read_bytes()), dtype=torch.uint8) for k in jpegs]
    gpu = dd.torchcodec_decode_jpegs(data, torch.device("cuda"))
    for name, d, g in zip(jpegs, data, gpu, strict=True):
        c = decode_jpeg(d, mode="RGB")
        assert g.device.type == "cuda" and g.dtype == torch.uint8
        assert g.shape == c.shape, name  # EXIF orientation applied on both
        diff = (g.cpu().float() - c.float()).abs().mean(dim=(1, 2))
        assert (diff < 2).all(), (name, diff.tolist())


@needs_cuda_jpeg
@pytest.mark.parametrize("method", ["crop", "squish"])
def test_gpu_batch_decode_equals_the_cpu_path_within_tolerance(files, method):
    items = list(files.values())
    idx = list(range(len(items)))
    x, kept, bad, _, _ = dd.JpegBatchDecoder("cuda").decode_files(items, idx, P, method)
    ex, ekept, ebad, _, _ = decode_readable(items, idx, P, method)
    assert x.device.type == "cuda" and kept == ekept and bad == ebad  # broken: reported
    diff = (x.cpu().float() - ex.float()).abs().mean(dim=(1, 2))
    assert (diff < 2).all(), diff.tolist()


@needs_cuda_jpeg
@pytest.mark.filterwarnings("ignore:epoch 0. skipped")
def test_bunch_decodes_on_the_gpu_automatically(broken_split):
    items, labels, classes = broken_split
    kw = dict(size=16, bs=4, num_workers=2, ds_tfms=None, seed=0, device="cuda")
    names = [classes[y] for y in labels]
    auto = ImageDataBunch.from_lists(items[0].parent, items, names, **kw)
    cpu = ImageDataBunch.from_lists(items[0].parent, items, names, decode_device="cpu", **kw)
    assert auto.decode_device.type == "cuda" and cpu.decode_device.type == "cpu"
    for a, c in [(auto.valid_dl, cpu.valid_dl), (auto.train_dl, cpu.train_dl)]:
        xa, ya = zip(*a.uint8_batches(0), strict=True)
        xc, yc = zip(*c.uint8_batches(0), strict=True)
        assert torch.equal(torch.cat(ya), torch.cat(yc))
        diff = (torch.cat(xa).float() - torch.cat(xc).float()).abs().mean()
        assert diff < 2 and a.bad_items == c.bad_items
    assert auto.bad_items and set(auto.bad_items) <= {items[2], items[5]}  # train drops some


def test_encoded_jpeg_check():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    data = buf.getvalue()
    assert dd._complete_jpeg(data) and dd._complete_jpeg(data + b"\x00\x00\n")
    assert not dd._complete_jpeg(data[:-10]) and not dd._complete_jpeg(b"\x89PNG" + data[4:])
    assert not dd._complete_jpeg(b"")
