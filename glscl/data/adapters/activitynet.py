"""ActivityNet Captions: ``train.json`` and ``val_1.json``, one paragraph per video."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from glscl.data.adapters.common import (
    MISSING,
    Reporter,
    SplitBuilder,
    carve,
    clean_id,
    clean_text,
    extensions,
    fail,
    get_key,
    open_split,
    read_json,
    refuse_test_overlap,
    short,
    video_ok,
    video_with_ext,
)
from glscl.data.splits import RetrievalSplit

TRAIN_FILE = "train.json"
TEST_FILE = "val_1.json"
NATIVE_EXTS = (".mp4", ".mkv", ".webm")


def load_activitynet(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str | None = None,
    val_size: int = 500,
    seed: int = 0,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """ActivityNet Captions: one paragraph (all sentences, in order) per video.

    There is no labelled test set: "test" is ``val_1.json`` (the standard paragraph-to-video
    protocol) and "val" is ``val_size`` videos carved from ``train.json`` (deterministic given
    ``seed``; they leave "train"). Videos are ``v_<id>`` with ``video_ext``, or when it is None with
    ``.mp4``, ``.mkv`` or ``.webm``, whichever exists; ids that already start with ``v_`` are not
    prefixed again.
    """
    root, videos, report = open_split(root, split, video_dir, skip_bad)
    path = root / (TEST_FILE if split == "test" else TRAIN_FILE)
    data = _read(path)
    keep = _selection(root, split, list(data), val_size, seed)
    builder = SplitBuilder("activitynet", split, (path,))
    exts = extensions(video_ext, NATIVE_EXTS)
    for key, entry in data.items():
        if not keep(key):
            continue
        row = f"entry {short(key)}"
        video_id = clean_id(key, path, row, "video id", report)
        if video_id is None:
            continue
        paragraph = _paragraph(get_key(entry, "sentences", path, row, report), path, row, report)
        if paragraph is None:
            continue
        stem = video_id if video_id.startswith("v_") else f"v_{video_id}"
        video = video_with_ext(videos, stem, exts)
        if video_ok(video, check_videos, path, row, report):
            builder.add(video_id, video, [paragraph])
    return builder.build(report)


def carve_pool(root: str | Path) -> tuple[Path, list[str]]:
    """The file and the video ids the validation split is carved from."""
    path = Path(root) / TRAIN_FILE
    return path, list(_read(path))


def _read(path: Path) -> dict[str, Any]:
    """An ActivityNet Captions JSON file: video id -> {sentences, timestamps, duration}."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise fail(path, "top level", "structure", f"expected a JSON object of videos, got {type(data).__name__}")
    return data


def _selection(root: Path, split: str, train_ids: list[str], val_size: int, seed: int) -> Callable[[str], bool]:
    """Which keys of the file belong to ``split`` (train and val share ``train.json``)."""
    if split == "test":
        return lambda key: True
    val_ids = carve(train_ids, val_size, seed)
    if split == "val" and (root / TEST_FILE).is_file():
        refuse_test_overlap(val_ids, set(_read(root / TEST_FILE)), root / TRAIN_FILE, root / TEST_FILE)
    return (lambda key: key in val_ids) if split == "val" else (lambda key: key not in val_ids)


def _paragraph(sentences: Any, file: Path, row: str, report: Reporter) -> str | None:
    """All sentences of one video joined into a paragraph, or None (reported) if none is usable."""
    if sentences is MISSING:
        return None
    if not isinstance(sentences, list) or not sentences:
        report.bad(file, row, "sentences", f"expected a non-empty list of sentences, got {short(sentences)}")
        return None
    cleaned = (clean_text(text, file, row, f"sentences[{j}]", report) for j, text in enumerate(sentences))
    kept = [text for text in cleaned if text is not None]
    if not kept:
        report.bad(file, row, "sentences", "no usable sentence")
        return None
    return " ".join(kept)
