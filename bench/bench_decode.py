"""Decode throughput, CPU vs CUDA (nvJPEG through TorchCodec): images per second on 256 JPEGs
of 500 x 375 (quality 90, 4:2:0, smooth random content), written to a temporary folder.

Rows (each warmed up once, then the median of 3 timed passes):
- decode, cpu:   torchcodec decode_jpeg file by file in this process (one thread of work)
- decode, cuda:  torchcodec decode_jpeg on lists of 64 files, synchronized
- pass, cpu:     a DeviceDataLoader pass (read + decode + presize 224, default workers, bs 64)
                 decoding on the CPU: what the first epoch costs today
- pass, cuda:    the same pass with JpegBatchDecoder: workers read, the GPU decodes and
                 presizes (bench only without the augmentation step)

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

from fastcore_ext.data import DeviceDataLoader, ImageDataset, default_num_workers
from fastcore_ext.data.device_decode import JpegBatchDecoder, cuda_jpeg_support

N, W, H, BS, PRESIZE = 256, 500, 375, 64, 224


def make_jpegs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for k in range(N):
        small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
        p = folder / f"{k:03d}.jpg"
        Image.fromarray(small).resize((W, H), Image.BICUBIC).save(p, quality=90)
        files.append(p)
    return files


def timed(fn, sync) -> float:
    """Images per second: one warm-up, then the median of 3 passes."""
    fn()
    times = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return N / statistics.median(times)


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
    device = torch.cuda.get_device_name(0) if cuda is not None else "no GPU"
    print(f"decode throughput: {N} JPEGs {W}x{H}, presize {PRESIZE}, bs {BS}; {device}")
    for name, rate in rows:
        print(f"  {name:<28}{rate:>9.0f} images/s")
    if cuda is None:
        print(f"  cuda rows: not run ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
