"""MSR-VTT: ``MSRVTT_data.json``, the 9k training list, optional ``MSRVTT_val.csv``, the 1k-A test CSV."""
from __future__ import annotations

from pathlib import Path

from glscl.data.adapters.common import (
    Reporter,
    SplitBuilder,
    carve,
    clean_id,
    clean_text,
    drop_duplicates,
    fail,
    get_key,
    open_split,
    read_csv,
    read_json,
    refuse_test_overlap,
    video_ok,
)
from glscl.data.splits import RetrievalSplit

CAPTIONS_FILE = "MSRVTT_data.json"
TRAIN_FILE = "MSRVTT_train.9k.csv"
VAL_FILE = "MSRVTT_val.csv"
TEST_FILE = "MSRVTT_JSFUSION_test.csv"


def load_msrvtt(
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
    """MSR-VTT: train on every caption of the 9k videos, test on the 1k-A set (one caption per video).

    Validation is ``MSRVTT_val.csv`` if present, else ``val_size`` videos carved from the 9k list
    (deterministic given ``seed``); either way those videos leave the training split.
    Videos are ``{video_dir or root/'videos'}/{video_id}{video_ext}`` (``.mp4`` when None).
    """
    root, videos, report = open_split(root, split, video_dir, skip_bad)
    video_ext = video_ext or ".mp4"
    if split == "test":
        builder = SplitBuilder("msrvtt", split, (root / TEST_FILE,))
        _test_split(root / TEST_FILE, videos, video_ext, check_videos, builder, report)
    else:
        list_file, rows = _split_rows(root, split, val_size, seed, report)
        builder = SplitBuilder("msrvtt", split, (list_file,))
        captions = _captions(root / CAPTIONS_FILE, {vid for vid, _ in rows}, report)
        for video_id, line in rows:
            if video_id not in captions:
                reason = f"unknown video {video_id!r}: no captions in {CAPTIONS_FILE}"
                report.bad(list_file, f"line {line}", "video_id", reason)
                continue
            path = videos / f"{video_id}{video_ext}"
            if video_ok(path, check_videos, list_file, f"line {line}", report):
                builder.add(video_id, path, captions[video_id])
    return builder.build(report)


def carve_pool(root: str | Path) -> tuple[Path, list[str]] | None:
    """The file and the video ids the validation split is carved from (None when MSRVTT_val.csv ships one)."""
    root = Path(root)
    if (root / VAL_FILE).is_file():
        return None
    rows = _read_video_id_csv(root / TRAIN_FILE, Reporter(skip_bad=True))
    return root / TRAIN_FILE, [vid for vid, _ in rows]


def _split_rows(root: Path, split: str, val_size: int, seed: int, report: Reporter) -> tuple[Path, list[tuple[str, int]]]:
    """The (video id, line) rows of the train or val split, and the file they come from."""
    train_file, val_file, test_file = root / TRAIN_FILE, root / VAL_FILE, root / TEST_FILE
    train_rows = _read_video_id_csv(train_file, report)
    if val_file.is_file():
        val_rows = _read_video_id_csv(val_file, report)
        val_ids, val_source = {vid for vid, _ in val_rows}, val_file
    else:
        val_ids, val_source = carve([vid for vid, _ in train_rows], val_size, seed), train_file
        val_rows = [(vid, line) for vid, line in train_rows if vid in val_ids]
    if split == "train":
        return train_file, [(vid, line) for vid, line in train_rows if vid not in val_ids]
    if test_file.is_file():
        refuse_test_overlap(val_ids, _test_ids(test_file), val_source, test_file)
    return val_source, val_rows


def _read_video_id_csv(path: Path, report: Reporter) -> list[tuple[str, int]]:
    """(video id, line) of a CSV with a ``video_id`` column; duplicates are bad items."""
    rows = (
        (clean_id(row["video_id"], path, f"line {line}", "video_id", report), line)
        for line, row in read_csv(path, ("video_id",))
    )
    return drop_duplicates(path, [(vid, line) for vid, line in rows if vid is not None], report)


def _captions(path: Path, wanted: set[str], report: Reporter) -> dict[str, list[str]]:
    """Captions of the ``wanted`` videos from ``MSRVTT_data.json`` (``sentences[]``), in file order."""
    data = read_json(path)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise fail(path, "top level", "sentences", "expected a JSON object with a 'sentences' list")
    captions: dict[str, list[str]] = {}
    for index, entry in enumerate(sentences):
        row = f"sentences[{index}]"
        video_id = clean_id(get_key(entry, "video_id", path, row, report), path, row, "video_id", report)
        if video_id not in wanted:
            continue
        caption = clean_text(get_key(entry, "caption", path, row, report), path, row, "caption", report)
        if caption is not None:
            captions.setdefault(video_id, []).append(caption)
    return captions


def _test_split(path: Path, videos: Path, ext: str, check: bool, builder: SplitBuilder, report: Reporter) -> None:
    """Fill ``builder`` from the 1k-A test CSV (``video_id``, ``sentence`` per row)."""
    for line, row in read_csv(path, ("video_id", "sentence")):
        where = f"line {line}"
        video_id = clean_id(row["video_id"], path, where, "video_id", report)
        caption = clean_text(row["sentence"], path, where, "sentence", report) if video_id else None
        if video_id is None or caption is None:
            continue
        video = videos / f"{video_id}{ext}"
        if video_ok(video, check, path, where, report):
            builder.add(video_id, video, [caption])


def _test_ids(path: Path) -> set[str]:
    """Video ids of the test CSV (bad rows ignored: this only guards against overlap)."""
    quiet = Reporter(skip_bad=True)
    rows = read_csv(path, ("video_id",))
    ids = (clean_id(row["video_id"], path, f"line {line}", "video_id", quiet) for line, row in rows)
    return {video_id for video_id in ids if video_id}


def unknown_caption_ids(root: str | Path) -> list[tuple[str, str, str]]:
    """(file, row, reason) of every caption whose video id is not among the videos ``MSRVTT_data.json``
    lists (its ``sentences`` and the 1k-A test rows): the adapter ignores such captions or finds no
    video for them, so they mean annotation files from different releases."""
    root = Path(root)
    data = read_json(root / CAPTIONS_FILE)
    listed = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(listed, list):
        return []  # no registry of videos to check against (the adapter needs none)
    known = {v.get("video_id") for v in listed if isinstance(v, dict)}
    quiet = Reporter(skip_bad=True)
    found = []
    for index, entry in enumerate(data.get("sentences") or []):
        video_id = entry.get("video_id") if isinstance(entry, dict) else None
        if isinstance(video_id, str) and video_id not in known:
            reason = f"video_id: caption for unknown video {video_id!r} (not in videos[])"
            found.append((str(root / CAPTIONS_FILE), f"sentences[{index}]", reason))
    if (root / TEST_FILE).is_file():
        for line, row in read_csv(root / TEST_FILE, ("video_id",)):
            video_id = clean_id(row["video_id"], root / TEST_FILE, f"line {line}", "video_id", quiet)
            if video_id and video_id not in known:
                reason = f"video_id: caption for unknown video {video_id!r} (not in {CAPTIONS_FILE} videos[])"
                found.append((str(root / TEST_FILE), f"line {line}", reason))
    return found
