"""``glscl data check``: every dataset problem that would stop a run, found at once, without training.

    report = check_dataset(cfg)            # cfg: a RunConfig (its data and model sections are read)
    print(report.summary())                # one screen
    report.write(path)                     # JSON: every problem, one entry per bad file or row

What it checks, with the package's own readers (the adapters, ``glscl.data.video.probe_video``):

* the annotation files of each split are found and parse (every bad row at once: the adapters run
  with ``skip_bad``); captions for videos the dataset does not list; videos shared by two splits;
* split sizes against the benchmark's published split (``PUBLISHED_SPLITS``; a warning when they
  differ, as they do for subsets);
* captions per video, and the share of captions longer than ``model.max_words`` tokens (cut);
* every video file: missing, empty, unreadable, or too short to give ``model.num_frames`` frames at
  ``data.sample_fps`` (a warning: such clips are zero-padded). Files are probed in parallel threads,
  with a progress bar; each result is appended to a probe cache (JSON lines keyed by path, size and
  modification time), so an interrupted check resumes where it stopped;
* the feature cache's size for this config and, given ``benchmarks/gpu_check.py --json`` figures,
  a rough time per epoch.

Errors are what would stop ``glscl train`` (with ``data.skip_bad=true`` bad rows and unreadable
videos are skipped instead, so they count as warnings); ``glscl data check`` exits 2 when there is one.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from glscl.data.splits import SPLITS, RetrievalSplit
from glscl.files import write_json

PUBLISHED_SPLITS: dict[str, tuple[str, dict[str, int]]] = {
    "msrvtt": ("MSR-VTT 9k / 1k-A", {"train+val": 9000, "test": 1000}),
    "msvd": ("MSVD 1,200 / 100 / 670", {"train": 1200, "val": 100, "test": 670}),
    "didemo": ("DiDeMo 8,395 / 1,065 / 1,004", {"train": 8395, "val": 1065, "test": 1004}),
    "lsmdc": ("LSMDC 101,079 / 7,408 / 1,000", {"train": 101079, "val": 7408, "test": 1000}),
    "activitynet": ("ActivityNet Captions 10,009 train / 4,917 val_1", {"train+val": 10009, "test": 4917}),
}
"""Videos per split of each benchmark's standard retrieval split; 'train+val' where validation is carved from train."""

SHOWN = 12  # problems printed in the summary; the report lists them all


@dataclass(frozen=True)
class Problem:
    """One bad file or row. ``severity``: 'error' (would stop a run) or 'warning'."""

    severity: str
    file: str
    where: str
    problem: str

    def line(self) -> str:
        where = f": {self.where}" if self.where else ""
        return f"{self.severity}: {self.file}{where}: {self.problem}"


@dataclass
class SplitStats:
    """What one split holds."""

    videos: int = 0
    captions: int = 0
    captions_per_video: tuple[int, float, int] = (0, 0.0, 0)  # min, mean, max
    cut_captions: int = 0  # longer than L tokens (start and end included)
    short_videos: int = 0  # give fewer than T frames at the sampling rate
    bad_videos: int = 0  # missing, empty or unreadable


@dataclass
class CheckReport:
    """Result of ``check_dataset``: per-split statistics, every problem, and the estimates."""

    dataset: str
    root: str
    num_frames: int
    max_words: int
    sample_fps: float
    splits: dict[str, SplitStats] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    estimates: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, severity: str, file: str | Path, where: str, problem: str) -> None:
        self.problems.append(Problem(severity, str(file), where, " ".join(str(problem).split())))

    def summary(self, report_path: str | Path | None = None) -> str:
        """One screen: the splits, the estimates, the first problems and the verdict."""
        lines = [f"data check: {self.dataset} at {self.root} (T={self.num_frames} frames at {self.sample_fps:g} fps, "
                 f"L={self.max_words} tokens)"]
        for name, s in self.splits.items():
            lo, mean, hi = s.captions_per_video
            cut = 100.0 * s.cut_captions / s.captions if s.captions else 0.0
            lines.append(f"  {name:<5} {s.videos:>7,} videos {s.captions:>9,} captions  per video {lo}-{hi} (mean {mean:.1f})  "
                         f"cut at L {cut:.1f} %  short {s.short_videos:,}  bad {s.bad_videos:,}")
        lines += [f"  {text}" for text in self.estimates]
        for p in (self.errors + self.warnings)[:SHOWN]:
            lines.append("  " + p.line())
        hidden = len(self.problems) - min(len(self.problems), SHOWN)
        where = f" in {report_path}" if report_path else ""
        if hidden:
            lines.append(f"  ... {hidden} more, all listed{where}")
        verdict = "FAIL" if self.errors else "OK"
        lines.append(f"{verdict}: {len(self.errors)} error(s) that would stop a run, {len(self.warnings)} warning(s)"
                     + (f"; report: {report_path}" if report_path else ""))
        return "\n".join(lines)

    def write(self, path: str | Path) -> Path:
        """The whole report as JSON (written atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"dataset": self.dataset, "root": self.root, "num_frames": self.num_frames, "max_words": self.max_words,
                "sample_fps": self.sample_fps, "ok": not self.errors,
                "splits": {k: asdict(v) for k, v in self.splits.items()}, "estimates": self.estimates,
                "errors": [asdict(p) for p in self.errors], "warnings": [asdict(p) for p in self.warnings]}
        write_json(path, data, indent=1)
        return path


def check_dataset(cfg, *, workers: int = 4, probe_cache: str | Path | None = None, progress: bool = True,
                  gpu_figures: str | Path | None = None) -> CheckReport:
    """Check the dataset ``cfg.data`` names for a run of ``cfg`` (see the module docstring)."""
    from glscl.data import annotated_split, split_overlaps
    from glscl.data.adapters import UNKNOWN_CAPTIONS, DatasetError

    data, model = cfg.data, cfg.model
    report = CheckReport(data.dataset, str(data.root), model.num_frames, model.max_words, data.sample_fps)
    row_severity = "warning" if data.skip_bad else "error"  # what data.skip_bad skips does not stop a run
    splits: dict[str, RetrievalSplit] = {}
    for name in SPLITS:
        try:
            splits[name] = annotated_split(data, name, skip_bad=True, announce=False)
        except (DatasetError, ValueError, OSError) as e:  # a file-level problem: this split cannot be read
            report.add("error", data.root, f"{name} split", str(e))
            continue
        for file, row, reason in splits[name].skipped:
            report.add(row_severity, file, row, reason)
        if not splits[name].num_videos:
            report.add("error", " and ".join(splits[name].source) or data.root, f"{name} split", "no videos: a run needs every split")
    for line in split_overlaps(splits):
        report.add("error", data.root, "splits", line)
    adapter = "msrvtt" if data.dataset == "world" else data.dataset
    if adapter in UNKNOWN_CAPTIONS:
        try:
            for file, row, reason in UNKNOWN_CAPTIONS[adapter](data.root):
                report.add("error", file, row, reason)
        except (DatasetError, OSError):
            pass  # already reported by the split that reads the file
    _published_sizes(report, splits)
    lengths = _token_lengths(splits, model.max_words)
    probes = probe_videos(sorted({p for s in splits.values() for p in s.video_paths}), workers=workers,
                          cache=probe_cache, progress=progress)
    for name, split in splits.items():
        report.splits[name] = _split_stats(report, split, lengths[name], probes, data.sample_fps, row_severity)
    report.estimates = estimates(cfg, splits, gpu_figures)
    return report


# -- videos -------------------------------------------------------------------------------------------

def probe_videos(paths: list[Path], *, workers: int = 4, cache: str | Path | None = None,
                 progress: bool = True) -> dict[Path, tuple[int, float] | str]:
    """Path -> (native frames, native fps), or the one-line reason it cannot be read.

    ``workers`` threads (decord decodes outside the GIL); ``cache``: a JSON-lines file of earlier results,
    keyed by resolved path, size and modification time, appended to as each probe finishes."""
    from tqdm.auto import tqdm

    known = _read_probe_cache(cache)
    results: dict[Path, tuple[int, float] | str] = {}
    todo: list[tuple[Path, str | None]] = []
    for path in paths:
        stamp = _stamp(path)
        if stamp is None:
            results[path] = f"{path}: no such file"
        elif stamp in known:
            results[path] = known[stamp] if isinstance(known[stamp], str) else tuple(known[stamp])
        else:
            todo.append((path, stamp))
    out = None
    if cache and todo:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        out = open(cache, "a", encoding="utf-8")
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            bar = tqdm(total=len(todo), desc="probing videos", unit="video", disable=not progress or not todo)
            for (path, stamp), result in zip(todo, pool.map(lambda item: _probe(item[0]), todo)):
                results[path] = result
                if out is not None:
                    out.write(json.dumps({"stamp": stamp, "result": result}) + "\n")
                bar.update()
            bar.close()
    finally:
        if out is not None:
            out.close()
    return results


def _probe(path: Path) -> tuple[int, float] | str:
    from glscl.data.video import VideoError, probe_video

    try:
        return probe_video(path)
    except VideoError as e:
        return str(e)


def _stamp(path: Path) -> str | None:
    """'resolved path|size|mtime_ns', or None for a missing file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _read_probe_cache(cache: str | Path | None) -> dict:
    """Stamp -> result of an earlier check; a line cut short by an interruption is ignored."""
    known: dict = {}
    if cache and Path(cache).is_file():
        for line in Path(cache).read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                known[entry["stamp"]] = entry["result"]
            except (ValueError, KeyError, TypeError):
                continue
    return known


# -- per split ------------------------------------------------------------------------------------------

def _split_stats(report: CheckReport, split: RetrievalSplit, lengths: list[int], probes: dict, sample_fps: float,
                 bad_severity: str) -> SplitStats:
    from glscl.data.video import sample_frame_indices

    per_video = Counter(split.caption_video)
    counts = [per_video.get(i, 0) for i in range(split.num_videos)]
    stats = SplitStats(split.num_videos, split.num_captions,
                       (min(counts), sum(counts) / len(counts), max(counts)) if counts else (0, 0.0, 0),
                       sum(n > report.max_words for n in lengths))
    for video_id, path in zip(split.video_ids, split.video_paths):
        result = probes[path]
        if isinstance(result, str):
            stats.bad_videos += 1
            report.add(bad_severity, path, f"{split.name} video {video_id}", result.removeprefix(f"{path}: "))
            continue
        frames, fps = result
        got = sample_frame_indices(frames, fps, report.num_frames, sample_fps)[1]
        if got < report.num_frames:
            stats.short_videos += 1
            report.add("warning", path, f"{split.name} video {video_id}",
                       f"too short: {frames / fps:.1f} s gives {got} of T={report.num_frames} frames at {sample_fps:g} fps "
                       "(zero-padded)")
    return stats


def _token_lengths(splits: dict[str, RetrievalSplit], max_words: int) -> dict[str, list[int]]:
    """Tokens per caption (open_clip's BPE, start and end tokens included), per split."""
    if not any(s.captions for s in splits.values()):
        return {name: [] for name in splits}
    from glscl.model.backbone import Tokenizer

    bpe = Tokenizer(max_words).bpe
    memo: dict[str, int] = {}

    def length(caption: str) -> int:
        if caption not in memo:
            memo[caption] = len(bpe.encode(caption)) + 2
        return memo[caption]

    return {name: [length(c) for c in s.captions] for name, s in splits.items()}


def _published_sizes(report: CheckReport, splits: dict[str, RetrievalSplit]) -> None:
    """A warning per split whose size differs from the benchmark's published split."""
    if report.dataset not in PUBLISHED_SPLITS:
        return
    label, sizes = PUBLISHED_SPLITS[report.dataset]
    for key, expected in sizes.items():
        parts = key.split("+")
        if not all(p in splits for p in parts):
            continue
        found = sum(splits[p].num_videos for p in parts)
        if found != expected:
            report.add("warning", report.root, f"{key} split",
                       f"{found:,} videos; the published split ({label}) has {expected:,}")


# -- estimates ---------------------------------------------------------------------------------------------

def estimates(cfg, splits: dict[str, RetrievalSplit], gpu_figures: str | Path | None = None) -> list[str]:
    """The feature cache's size for ``cfg`` and, given the JSON that ``benchmarks/gpu_check.py --json``
    writes, a rough time per epoch."""
    size = cache_bytes(cfg, splits)
    videos = sum(s.num_videos for s in splits.values())
    captions = sum(s.num_captions for s in splits.values())
    if size is None:
        lines = [f"feature cache: unknown width for backbone {cfg.model.backbone!r}"]
    else:
        lines = [f"feature cache: {_bytes(size)} for {videos:,} videos x T={cfg.model.num_frames} and {captions:,} captions "
                 f"x L={cfg.model.max_words} (float16)"]
    if gpu_figures:
        lines += _epoch_time(cfg, splits.get("train"), json.loads(Path(gpu_figures).read_text()))
    return lines


def cache_bytes(cfg, splits: dict[str, RetrievalSplit]) -> int | None:
    """Bytes of the arrays ``glscl.data.cache`` writes for these splits (None: unknown backbone): per video
    T x d float16 frames and T mask bytes; per caption a float32 d sentence vector, L x d float16 token
    states, L mask bytes and an int64 video index."""
    from glscl.model.backbone import embedding_width

    d = embedding_width(cfg.model.backbone)
    if d is None:
        return None
    t, length = cfg.model.num_frames, cfg.model.max_words
    videos = sum(s.num_videos for s in splits.values())
    captions = sum(s.num_captions for s in splits.values())
    return videos * t * (2 * d + 1) + captions * (4 * d + length * (2 * d + 1) + 8)


def _epoch_time(cfg, train: RetrievalSplit | None, figures: dict) -> list[str]:
    """A rough time per training epoch from measured GPU figures, scaled by frames per step."""
    if train is None or not train.num_captions:
        return []
    rows = {r["name"]: r for r in figures.get("rows", []) if r.get("value")}
    sizes = figures.get("sizes", {})
    ref = sizes.get("batch", 128) * sizes.get("frames", 12)
    step = min((r["value"] for n, r in rows.items() if n.startswith("train step")), default=None)
    decode = max((r["value"] for n, r in rows.items() if n.startswith("decode")), default=None)
    encode = max((r["value"] for n, r in rows.items() if n.startswith("cache build")), default=None)
    b, t = cfg.train.batch_size, cfg.model.num_frames
    lines = []
    if step is not None:
        steps = math.ceil(train.num_captions / b)
        compute = steps * step * b * t / ref
        bound = f"; decoding {train.num_captions / decode * t / sizes.get('frames', 12):.0f} s" if decode else ""
        lines.append(f"end to end, one epoch: about {compute:.0f} s of training steps ({steps:,} steps of B={b}, T={t}){bound} "
                     f"(from {figures.get('source', 'gpu_check figures')})")
    if encode is not None:
        lines.append(f"feature cache build (training videos): about {train.num_videos * t / encode:.0f} s of encoding")
    return lines


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} TiB"
