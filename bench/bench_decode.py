"""Decode throughput, CPU vs CUDA (nvJPEG through TorchCodec): images per second on 256 JPEGs
of 500 x 375 (quality 90, 4:2:0, smooth random content), written to a temporary folder.

Rows (each warmed up once, then the median of 3 timed passes):
- decode, cpu:   torchcodec decode_jpeg file by file in this process (one thread of work)
- decode, cuda:  torchcodec decode_jpeg on lists of 64 files, synchronized
- pass, cpu:     a DeviceDataLoader pass (read + decode + presize 224, default workers, bs 64)
                 decoding on the CPU: what the first epoch costs today
- pass, cuda:    the same pass with JpegBatchDecoder: workers read, the GPU decodes and
                 presizes (bench only without the augmentation step)

Then large photos, one thread: 24 JPEGs of 3000 x 2000 (6 MP, a phone camera's, quality 90)
decoded and presized whole (`images.load_whole`) to 160 and to 460 (the lesson's presize),
decoded whole (`JPEG_REDUCING_GAP = None`, as fastai) and reduced (the default: libjpeg's DCT
scaling to 1/4 and 1/2 here), with the PSNR of the reduced presize against the whole one.

    python bench/bench_decode.py        # prints the table; CUDA rows say why they are missing
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastcore_ext.data import DeviceDataLoader, ImageDataset, default_num_workers, images
from fastcore_ext.data.device_decode import JpegBatchDecoder, cuda_jpeg_support

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import cpu_model  # noqa: E402

N, W, H, BS, PRESIZE = 256, 500, 375, 64, 224
PHOTOS, PHOTO_W, PHOTO_H = 24, 3000, 2000


def make_jpegs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for k in range(N):
        small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
        p = folder / f"{k:03d}.jpg"
        Image.fromarray(small).resize((W, H), Image.BICUBIC).save(p, quality=90)
        files.append(p)
    return files


def make_photos(folder: Path) -> list[Path]:
    """Photo-like JPEGs: smooth shapes plus sensor noise, so that they compress as photos do."""
    rng = np.random.default_rng(1)
    files = []
    for k in range(PHOTOS):
        small = rng.integers(0, 256, (PHOTO_H // 50, PHOTO_W // 50, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((PHOTO_W, PHOTO_H), Image.BICUBIC))
        noisy = img.astype(np.int16) + rng.normal(0, 4, img.shape).astype(np.int16)
        p = folder / f"photo{k:02d}.jpg"
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(p, quality=90)
        files.append(p)
    return files


def timed(fn, sync, n: int = N) -> float:
    """Images per second: one warm-up, then the median of 3 passes."""
    fn()
    times = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def photo_rows(folder: Path) -> list[tuple[str, float, str]]:
    """(row, images/s, note) for large photos presized to 160 and 460, whole vs reduced."""
    files = make_photos(folder)
    default_gap = images.JPEG_REDUCING_GAP
    rows = []
    for presize in (160, 460):
        out = {}
        for name, gap in (("whole", None), ("reduced", default_gap)):
            images.JPEG_REDUCING_GAP = gap

            def decode_all(presize: int = presize) -> list[torch.Tensor]:
                return [images.load_whole(f, presize) for f in files]

            rate = timed(decode_all, lambda: None, PHOTOS)
            out[name] = decode_all()[:6]
            note = ""
            if name == "reduced":
                mse = statistics.fmean(
                    float(((a.float() - b.float()) ** 2).mean())
                    for a, b in zip(out["reduced"], out["whole"], strict=True)
                )
                note = f"PSNR {10 * np.log10(255**2 / mse):.1f} dB vs whole"
            rows.append((f"photo 6 MP -> {presize}, {name}", rate, note))
        images.JPEG_REDUCING_GAP = default_gap
    return rows


def main() -> int:
    from torchcodec.decoders import decode_jpeg

    why = cuda_jpeg_support() if torch.cuda.is_available() else "no CUDA device"
    cuda = torch.device("cuda") if not why else None
    sync = torch.cuda.synchronize if cuda is not None else (lambda: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = make_jpegs(Path(tmp))
        data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]

        def loader_pass(decoder):
            ds = ImageDataset(files, [0] * N, ["x"], PRESIZE)
            dl = DeviceDataLoader(
                ds, BS, train=False, size=PRESIZE, device=cuda or torch.device("cpu"), seed=0,
                decoder=decoder,
            )  # fmt: skip
            return lambda: [None for _ in dl.uint8_batches(0)]

        rows.append(("decode, cpu", timed(lambda: [decode_jpeg(d) for d in data], sync)))
        if cuda is not None:

            def gpu_decode():
                for k in range(0, N, BS):
                    decode_jpeg(data[k : k + BS], device=cuda)

            rows.append(("decode, cuda", timed(gpu_decode, sync)))
        workers = default_num_workers()
        rows.append((f"pass, cpu ({workers} workers)", timed(loader_pass(None), sync)))
        if cuda is not None:
            rows.append(("pass, cuda", timed(loader_pass(JpegBatchDecoder(cuda)), sync)))
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(1)  # as in a loader worker
        photos = photo_rows(Path(tmp))
    device = torch.cuda.get_device_name(0) if cuda is not None else "no GPU"
    print(f"{cpu_model()}; torch {torch.__version__}")
    print(f"decode throughput: {N} JPEGs {W}x{H}, presize {PRESIZE}, bs {BS}; {device}")
    for name, rate in rows:
        print(f"  {name:<28}{rate:>9.0f} images/s")
    if cuda is None:
        print(f"  cuda rows: not run ({why})")
    print(f"large photos, one thread: {PHOTOS} JPEGs {PHOTO_W}x{PHOTO_H}, decode + presize whole")
    for name, rate, note in photos:
        print(f"  {name:<28}{rate:>9.1f} images/s  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
