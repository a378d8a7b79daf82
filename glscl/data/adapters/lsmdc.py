"""LSMDC: tab-separated annotation rows (no header), one caption per clip."""
from __future__ import annotations

from pathlib import Path

from glscl.data.adapters.common import SplitBuilder, clean_id, clean_text, first_existing, open_split, read_lines, video_ok
from glscl.data.splits import RetrievalSplit

FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}
_COLUMNS = 6  # clip id, start, end, start aligned, end aligned, sentence


def load_lsmdc(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str | None = None,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """LSMDC: tab-separated rows (no header), one caption per clip.

    Videos are ``{video_dir or root/'videos'}/{movie}/{clip_id}{video_ext}`` (``.avi`` when None),
    where the movie is the clip id without its final ``_<timestamp>`` part (see :func:`lsmdc_movie`),
    or, when that file does not exist but ``{video_dir}/{clip_id}{video_ext}`` does, a flat folder.
    """
    root, videos, report = open_split(root, split, video_dir, skip_bad)
    path = root / FILES[split]
    builder = SplitBuilder("lsmdc", split, (path,))
    ext = video_ext or ".avi"
    for line, text in read_lines(path):
        where = f"line {line}"
        columns = text.split("\t", _COLUMNS - 1)
        if len(columns) != _COLUMNS:
            reason = f"expected {_COLUMNS} tab-separated columns, got {len(columns)}"
            report.bad(path, where, "columns", reason)
            continue
        clip_id = clean_id(columns[0], path, where, "clip id", report)
        movie = lsmdc_movie(clip_id) if clip_id else None
        if clip_id and movie is None:
            reason = f"cannot find the movie in {clip_id!r} (expected <movie>_<timestamp>)"
            report.bad(path, where, "clip id", reason)
        caption = clean_text(columns[-1], path, where, "sentence", report) if movie else None
        if caption is None:
            continue
        nested = videos / movie / f"{clip_id}{ext}"
        video = first_existing([nested, videos / f"{clip_id}{ext}"]) or nested
        if video_ok(video, check_videos, path, where, report):
            builder.add(clip_id, video, [caption])
    return builder.build(report)


def lsmdc_movie(clip_id: str) -> str | None:
    """The movie folder of an LSMDC clip id: everything before the final ``_<timestamp>``.

    ``"0001_American_Beauty_00.00.51.926-00.00.54.129"`` -> ``"0001_American_Beauty"``.
    """
    movie, _, timestamp = clip_id.rpartition("_")
    return movie if movie and timestamp else None
