"""DiDeMo: ``{split}_data.json``; all descriptions of a video form one paragraph."""
from __future__ import annotations

from pathlib import Path

from glscl.data.adapters.common import (
    Reporter,
    SplitBuilder,
    clean_id,
    clean_text,
    fail,
    first_existing,
    get_key,
    open_split,
    read_json,
    video_ok,
)
from glscl.data.splits import RetrievalSplit


def load_didemo(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str | None = None,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """DiDeMo: ``{split}_data.json``; all descriptions of a video, in file order, form one paragraph.

    Videos are ``{video_dir or root/'videos'}/{video}`` as given, or with ``.mp4`` appended
    (whichever exists; when neither does, as given if it has an extension, else with ``.mp4``).
    With ``video_ext``: the name with its extension replaced by ``video_ext``, or with ``video_ext``
    appended (whichever exists, else the first).
    """
    root, videos, report = open_split(root, split, video_dir, skip_bad)
    path = root / f"{split}_data.json"
    builder = SplitBuilder("didemo", split, (path,))
    paragraphs, first_row = _paragraphs(path, report)
    for video_id, descriptions in paragraphs.items():
        if not descriptions:
            report.bad(path, first_row[video_id], "description", f"video {video_id!r} has no usable description")
            continue
        video = _video_file(videos, video_id, video_ext)
        if video_ok(video, check_videos, path, first_row[video_id], report):
            builder.add(video_id, video, [" ".join(descriptions)])
    return builder.build(report)


def _paragraphs(path: Path, report: Reporter) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Descriptions of each video in file order, and the row where each video first appears."""
    entries = read_json(path)
    if not isinstance(entries, list):
        reason = f"expected a JSON list of entries, got {type(entries).__name__}"
        raise fail(path, "top level", "structure", reason)
    paragraphs: dict[str, list[str]] = {}
    first_row: dict[str, str] = {}
    for index, entry in enumerate(entries):
        row = f"entry {index}"
        video_id = clean_id(get_key(entry, "video", path, row, report), path, row, "video", report)
        if video_id is None:
            continue
        first_row.setdefault(video_id, row)
        description = clean_text(get_key(entry, "description", path, row, report), path, row, "description", report)
        paragraphs.setdefault(video_id, []).extend([description] if description else [])
    return paragraphs, first_row


def _video_file(videos: Path, name: str, video_ext: str | None = None) -> Path:
    """The video file of a DiDeMo entry: the name as given, else with ``.mp4`` appended (or with ``video_ext``)."""
    if video_ext:
        candidates = [videos / f"{Path(name).stem if Path(name).suffix else name}{video_ext}", videos / f"{name}{video_ext}"]
        return first_existing(candidates) or candidates[0]
    as_given, with_mp4 = videos / name, videos / f"{name}.mp4"
    default = as_given if Path(name).suffix else with_mp4
    return first_existing([as_given, with_mp4]) or default
