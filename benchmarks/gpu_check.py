"""GPU check: one command that prints the cost of the four heavy paths of the package, as one table.

    python benchmarks/gpu_check.py             # one CUDA GPU; sized to finish within 8 minutes
    python benchmarks/gpu_check.py --smoke     # tiny sizes on the CPU, seconds (what the test runs)
    python benchmarks/gpu_check.py --json figures.json   # also as JSON, for glscl data check --gpu-figures

Rows (full sizes; ``--smoke`` shrinks every one of them):

* train step: one optimiser step of the whole model (``Trainer.train_step``: ViT-B/32-sized open_clip
  backbone with random weights, fine-tuned, plus the paper-size GLSCL head: d = 512, K = 8,
  3 decoder layers, 8 heads, 4 temporal layers), T = 12 frames, batch 128, inputs already on the
  GPU; fp32 against bf16 autocast. Median seconds per step over 5 steps after 2 warm-up steps, and
  peak memory (``torch.cuda.max_memory_allocated``);
* cache build: the frozen backbone encoding frames in batches of 32 videos x T frames, fed random
  224 x 224 pixel tensors already on the GPU (this isolates the image encoder from decoding);
  embeddings copied back to the host in float16, as ``build_cache`` stores them; frames/s;
* decode: mp4 clips (320 x 240, 15 s at 30 fps, written by ``glscl.data.world.write_mp4``) decoded by
  ``ClipDataset`` (T = 12 frames at 1 fps, resized to 224) through a DataLoader with 0, 4 and
  8 worker processes, worker start-up included; clips/s;
* evaluation: encode-once evaluation of 1,000 texts against 100,000 cached videos with the GLSCL
  head (``glscl.engine.evaluate``: ``encode_texts``, then ``similarity_matrix`` over blocks of 256
  videos read from a float16 gallery as the feature cache stores it; random features of the cache's
  shapes); seconds and peak memory.

Without CUDA (and without ``--smoke``) it stops with a one-line message.

Running it on a GPU machine without internet that already has torch. Besides torch the rows need
these modules (pip names in brackets): open_clip (open_clip_torch), ftfy, wcwidth, regex, decord,
imageio_ffmpeg (imageio-ffmpeg), safetensors, yaml (pyyaml), tqdm, numpy, and torchvision with PIL
(pillow), which open_clip imports at start-up. timm and huggingface_hub are not needed (open_clip
imports them only when present). Run on the target, the script first says, in one line, which of
these pip packages are missing (``gpu_check: missing Python packages: ...``) and stops.

On a machine with internet, download their wheels for the target's Python (e.g. 3.12) at the
versions of requirements.txt (ftfy, wcwidth and regex: open_clip's dependencies, at the versions of
the project's environment), leaving out those the target already has::

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --dest wheels \\
        open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 regex==2026.11.19 decord==0.6.0 \\
        imageio-ffmpeg==0.8.1 safetensors==0.8.0 pyyaml==6.0.3 tqdm==4.70.1 numpy==2.4.6

imageio-ffmpeg only supplies an ffmpeg executable with libx264 (for writing the clips): its 0.8.1
wheel is 68 MB, the 0.6.0 wheel 29 MB and serves as well. torchvision, if missing, must be the
build for the target's torch and CUDA (``torch.__version__``, ``torch.version.cuda``; torch 2.11
pairs with torchvision 0.26, torch 2.14 with requirements.txt's 0.29.1); a torchvision built for
another torch fails to import. Copy ``wheels/`` and this repository to the target, then, in the
repository (the script puts the repository on ``sys.path`` itself, no install needed)::

    pip install --no-deps wheels/*.whl
    python benchmarks/gpu_check.py
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's glscl, installed or not

REQUIRED = {"open_clip": "open_clip_torch", "ftfy": "ftfy", "wcwidth": "wcwidth", "regex": "regex", "decord": "decord",
            "imageio_ffmpeg": "imageio-ffmpeg", "safetensors": "safetensors", "yaml": "pyyaml", "tqdm": "tqdm",
            "numpy": "numpy", "torchvision": "torchvision", "PIL": "pillow"}
"""module -> pip package, for every third-party module the rows import besides torch."""


@dataclass(frozen=True)
class Sizes:
    backbone: str
    frames: int  # T
    batch: int  # training batch
    steps: int  # timed training steps (after ``warmup``)
    warmup: int
    cache_videos: int  # videos per cache-build batch (x T frames)
    cache_batches: int
    clips: int  # mp4 clips decoded
    clip_size: tuple[int, int]  # width, height
    clip_seconds: int
    clip_fps: int
    workers: tuple[int, ...]
    decode_batch: int
    image_size: int  # decoded frames resized to this
    texts: int
    videos: int
    width: int  # d of the cached features
    words: int  # L
    eval_block: int


FULL = Sizes("ViT-B-32", 12, 128, 5, 2, 32, 20, 96, (320, 240), 15, 30, (0, 4, 8), 8, 224, 1000, 100_000, 512, 32, 256)
SMOKE = Sizes("glscl-tiny", 4, 4, 2, 1, 2, 2, 4, (64, 48), 3, 4, (0, 2), 2, 64, 20, 100, 64, 32, 32)


@dataclass
class Row:
    name: str
    value: float | None  # None: not measured (out of memory, or the part failed; the note says which)
    unit: str
    memory_gib: float | None
    note: str


class Meter:
    """Synchronisation and peak memory on one device (CUDA: allocator peak; CPU: the process's peak RSS so far)."""

    def __init__(self, device):
        import torch

        self.torch, self.device, self.cuda = torch, device, device.type == "cuda"

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def peak_gib(self) -> float:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated(self.device) / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def missing_packages() -> list[str]:
    """pip names of the ``REQUIRED`` modules that cannot be found."""
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def environment(device) -> list[str]:
    import decord
    import numpy as np
    import open_clip
    import torch

    lines = [f"python {platform.python_version()}, torch {torch.__version__}, open_clip {open_clip.__version__}, "
             f"decord {decord.__version__}, numpy {np.__version__}, {os.cpu_count()} CPU cores",
             f"float32 matmul precision '{torch.get_float32_matmul_precision()}', cuDNN {torch.backends.cudnn.version()}"]
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        lines.append(f"device {p.name} ({p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor}), "
                     f"CUDA {torch.version.cuda} (torch build), bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        lines.append(f"device CPU ({platform.processor() or platform.machine()}), CUDA not used")
    return lines


def train_rows(s: Sizes, device, meter: Meter, run_dir: Path) -> list[Row]:
    """Median time of ``Trainer.train_step`` on the whole model (backbone fine-tuned), fp32 and bf16 autocast."""
    import torch

    from glscl.config import build_config
    from glscl.data.dataset import DecodedBatch
    from glscl.engine.train import Batches, Trainer
    from glscl.model.factory import create_model

    rows = []
    for label, amp in (("fp32", "off"), ("bf16 autocast", "bf16")):
        name = f"train step, {label}"
        cfg = build_config(None, {"device": str(device), "model.backbone": s.backbone, "model.pretrained": None,
                                  "model.num_frames": s.frames, "train.batch_size": s.batch, "train.amp": amp,
                                  "train.epochs": s.warmup + s.steps})
        meter.reset()
        try:
            torch.manual_seed(0)
            model = create_model(cfg.model, device)
            trainer = Trainer(cfg, model, Batches(s.batch, lambda order, epoch: iter(())), run_dir, device, progress=False)
            size = model.backbone.image_size
            batch = DecodedBatch(
                ids=model.backbone.tokenizer(["a small red circle moves left, then a blue square appears"] * s.batch).to(device),
                pixels=torch.randn(s.batch, s.frames, 3, size, size, device=device),
                frame_mask=torch.ones(s.batch, s.frames, dtype=torch.bool, device=device),
                video=torch.arange(s.batch), caption=torch.arange(s.batch))
            times = []
            for _ in range(s.warmup + s.steps):
                meter.sync()
                start = time.perf_counter()
                trainer.train_step(batch)
                meter.sync()
                times.append(time.perf_counter() - start)
            value = statistics.median(times[s.warmup:])
            note = f"{s.backbone} + GLSCL head, B={s.batch}, T={s.frames}, {size} px"
            if device.type != "cuda" and amp != "off":
                note += " (autocast is off on CPU)"
            rows.append(Row(name, value, "s/step", meter.peak_gib(), note))
        except torch.cuda.OutOfMemoryError:
            rows.append(Row(name, None, "s/step", meter.peak_gib(), "out of memory"))
        model = trainer = batch = None
    return rows


def cache_rows(s: Sizes, device, meter: Meter) -> list[Row]:
    """Frames/s of the frozen image encoder on random pixels, embeddings copied back as float16."""
    import torch

    from glscl.model.backbone import create_backbone

    backbone = create_backbone(s.backbone, None, device=device).eval().requires_grad_(False)
    size = backbone.image_size
    pixels = torch.randn(s.cache_videos, s.frames, 3, size, size, device=device)
    rows = []
    for label, amp in (("fp32", False), ("bf16 autocast", True)):
        meter.reset()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            backbone.encode_frames(pixels).half().cpu()  # warm-up
            meter.sync()
            start = time.perf_counter()
            for _ in range(s.cache_batches):
                backbone.encode_frames(pixels).half().cpu()
            seconds = time.perf_counter() - start
        note = f"random {size}x{size} pixels on the device, {s.cache_videos} videos x {s.frames} frames a batch"
        if device.type != "cuda" and amp:
            note += " (autocast is off on CPU)"
        rows.append(Row(f"cache build, {label}", s.cache_batches * s.cache_videos * s.frames / seconds, "frames/s",
                        meter.peak_gib(), note))
    return rows


def write_clips(folder: Path, s: Sizes) -> list[Path]:
    """``s.clips`` mp4 files of moving colour ramps (distinct per clip), written in parallel."""
    import numpy as np

    from glscl.data.world import write_mp4

    width, height = s.clip_size
    u8 = np.uint8
    x = (np.arange(width) * 2 % 256).astype(u8)[None, None, :, None]
    y = (np.arange(height) % 256).astype(u8)[None, :, None, None]
    t = (np.arange(s.clip_seconds * s.clip_fps) * 3 % 256).astype(u8)[:, None, None, None]
    channel = np.array([0, 85, 170], u8)[None, None, None, :]

    def one(i: int) -> Path:
        path = folder / f"clip{i:04d}.mp4"
        write_mp4(path, x + y + t + channel + u8(i * 37 % 256), s.clip_fps)  # uint8 arithmetic wraps: a ramp
        return path

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(one, range(s.clips)))


def decode_rows(s: Sizes, folder: Path) -> list[Row]:
    """Clips/s of ``ClipDataset`` through a DataLoader, one full pass per worker count."""
    from torch.utils.data import DataLoader

    from glscl.data.dataset import ClipDataset
    from glscl.data.splits import RetrievalSplit
    from glscl.data.video import ClipTransform

    paths = write_clips(folder, s)
    split = RetrievalSplit("synthetic", "test", tuple(p.stem for p in paths), tuple(paths), (), ())
    dataset = ClipDataset(split, s.frames, ClipTransform(s.image_size))
    w, h = s.clip_size
    rows = []
    for workers in s.workers:
        start = time.perf_counter()
        clips = sum(len(b["video"]) for b in DataLoader(dataset, batch_size=s.decode_batch, num_workers=workers))
        seconds = time.perf_counter() - start
        rows.append(Row(f"decode, {workers} workers", clips / seconds, "clips/s", None,
                        f"{clips} mp4 {w}x{h} {s.clip_seconds} s at {s.clip_fps} fps -> T={s.frames} at 1 fps, "
                        f"{s.image_size} px; {clips * s.frames / seconds:.0f} frames/s"))
    return rows


def eval_rows(s: Sizes, device, meter: Meter) -> list[Row]:
    """Encode-once evaluation of ``s.texts`` texts against ``s.videos`` cached videos (random features)."""
    import numpy as np
    import torch

    from glscl.config import ModelConfig
    from glscl.data.features import cached_texts, cached_videos
    from glscl.engine.evaluate import encode_texts, similarity_matrix
    from glscl.model.glscl import GLSCL

    n, m, t, d, words = s.texts, s.videos, s.frames, s.width, s.words
    rng = np.random.default_rng(0)
    frames = np.empty((m, t, d), dtype=np.float16)
    for i in range(0, m, 10_000):
        frames[i:i + 10_000] = rng.standard_normal((min(10_000, m - i), t, d), dtype=np.float32)
    gallery = SimpleNamespace(frames=frames, frame_mask=np.ones((m, t), dtype=bool))
    lengths = rng.integers(5, words + 1, size=n)
    texts = SimpleNamespace(sentence=rng.standard_normal((n, d), dtype=np.float32),
                            tokens=rng.standard_normal((n, words, d), dtype=np.float32).astype(np.float16),
                            token_mask=np.arange(words)[None] < lengths[:, None], caption_video=np.arange(n))
    torch.manual_seed(0)
    head = GLSCL(ModelConfig(num_frames=t), d).to(device).eval()
    meter.reset()
    start = time.perf_counter()
    sim = similarity_matrix(head, encode_texts(head, cached_texts(texts), device), cached_videos(gallery, s.eval_block), device)
    meter.sync()
    seconds = time.perf_counter() - start
    assert sim.shape == (n, m)
    return [Row("evaluation, encode once", seconds, "s", meter.peak_gib(),
                f"{n:,} texts x {m:,} videos, d={d}, T={t}, L={words}, blocks of {s.eval_block}; "
                f"S on the host: {sim.numel() * 4 / 2**30:.2f} GiB")]


def measured(part: str, measure) -> list[Row]:
    """The rows of one part, each printed as soon as it is measured; a failure becomes one row saying why."""
    try:
        rows = measure()
    except Exception as e:  # one broken part must not hide the others' figures
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        rows = [Row(part, None, "-", None, f"failed: {type(e).__name__}: {reason}")]
    for r in rows:
        print(f"  {r.name}: {'-' if r.value is None else f'{r.value:.4g}'} {r.unit}  ({r.note})", flush=True)
    return rows


def format_table(rows: list[Row], memory_header: str) -> str:
    cells = [("measurement", "value", "unit", memory_header, "setting")]
    for r in rows:
        cells.append((r.name, "-" if r.value is None else f"{r.value:.4g}", r.unit,
                      "-" if r.memory_gib is None else f"{r.memory_gib:.2f}", r.note))
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = [" | ".join(c[i].ljust(widths[i]) if i < 4 else c[i] for i in range(5)) for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths) + "-+-" + "-" * 7)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, one thread (seconds)")
    parser.add_argument("--json", metavar="FILE", help="also write the sizes and rows as JSON (glscl data check --gpu-figures reads it)")
    args = parser.parse_args(argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit(f"gpu_check: no CUDA device visible to torch {torch.__version__}; "
                         "run on a GPU machine, or with --smoke for the CPU smoke run")
    missing = missing_packages()
    if missing:
        raise SystemExit(f"gpu_check: missing Python packages: {' '.join(missing)} "
                         "(pip install --no-deps their wheels; see the docstring of benchmarks/gpu_check.py)")
    s, device = (SMOKE, torch.device("cpu")) if args.smoke else (FULL, torch.device("cuda"))
    threads = torch.get_num_threads()
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: extra threads only wait on each other on a busy machine
    try:
        for line in environment(device):
            print(line, flush=True)
        meter = Meter(device)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            rows = []
            for part, measure in (("train step", lambda: train_rows(s, device, meter, Path(tmp))),
                                  ("cache build", lambda: cache_rows(s, device, meter)),
                                  ("decode", lambda: decode_rows(s, Path(tmp))),
                                  ("evaluation", lambda: eval_rows(s, device, meter))):
                rows += measured(part, measure)
    finally:
        torch.set_num_threads(threads)
    print(format_table(rows, "peak CUDA GiB" if device.type == "cuda" else "peak RSS GiB"))
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        from dataclasses import asdict

        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU smoke run"
        from glscl.files import write_json
        write_json(args.json, {"source": f"benchmarks/gpu_check.py on {where}", "sizes": asdict(s),
                               "rows": [asdict(r) for r in rows]}, indent=1)
    return rows

if __name__ == "__main__":
    main(sys.argv[1:])
