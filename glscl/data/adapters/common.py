"""What every dataset adapter shares: the error type, bad-input reports, file readers, value checks,
video paths, the split builder and validation carving."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glscl.data.splits import SPLITS, RetrievalSplit


class DatasetError(ValueError):
    """Bad dataset input; the message is one line naming the file, the row and the field."""


# ----------------------------------------------------------------------------- bad-input reports


@dataclass
class Reporter:
    """Raises on a bad item, or records it when the user asked to skip bad input."""

    skip_bad: bool
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    def bad(self, file: Path, row: str, field_name: str, reason: str) -> None:
        """Report one bad item: raise ``DatasetError`` or record ``(file, row, reason)``."""
        if not self.skip_bad:
            raise DatasetError(_one_line(f"{file}: {row}: {field_name}: {reason}"))
        self.skipped.append((str(file), row, _one_line(f"{field_name}: {reason}")))


def _one_line(message: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(message.split())


def fail(file: Path, row: str, field_name: str, reason: str) -> DatasetError:
    """A file-level error (never skippable)."""
    return DatasetError(_one_line(f"{file}: {row}: {field_name}: {reason}"))


def short(value: Any, limit: int = 60) -> str:
    """A short repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_split(root: str | Path, split: str, video_dir: str | Path | None, skip_bad: bool) -> tuple[Path, Path, Reporter]:
    """(root, video folder, reporter) for loading ``split``: the video folder is ``video_dir`` or
    ``root/'videos'``; a split name other than train / val / test is refused."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root)
    return root, Path(video_dir) if video_dir else root / "videos", Reporter(skip_bad)


# ----------------------------------------------------------------------------- reading files


def read_text(path: Path) -> str:
    """The whole file as text; bytes that are not UTF-8 become lone surrogates (checked per row)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing annotation file")
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _is_utf8(text: str) -> bool:
    """Whether a string holds only real characters (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error is a file-level ``DatasetError`` naming the line and column."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise fail(path, f"line {err.lineno}, column {err.colno}", "json", err.msg) from None


def read_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield ``(line number, row)`` of a CSV file with a header that has the ``required`` columns."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in required if name not in header]
    if missing:
        raise fail(path, "line 1", "header", f"missing column {missing[0]!r} (found {short(header)})")
    reader.fieldnames = header
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise fail(path, f"line {reader.line_num}", "csv", str(err)) from None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a text file, end-of-line removed, blank lines skipped."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if line.strip():
            yield number, line


def drop_duplicates(path: Path, rows: list[tuple[str, int]], report: Reporter) -> list[tuple[str, int]]:
    """(video id, line) rows with repeated ids reported as bad items."""
    first_line: dict[str, int] = {}
    for video_id, line in rows:
        if video_id in first_line:
            reason = f"duplicate video {video_id!r} (first on line {first_line[video_id]})"
            report.bad(path, f"line {line}", "video_id", reason)
        else:
            first_line[video_id] = line
    return [(video_id, line) for video_id, line in first_line.items()]


# ----------------------------------------------------------------------------- checking values


MISSING = object()  # returned by get_key for a missing key (already reported)


def _plain_text(value: Any, file: Path, row: str, field_name: str, report: Reporter) -> str | None:
    """``value`` if it is UTF-8 text, else None (reported unless already reported as missing)."""
    if value is MISSING:
        return None
    if value is None:
        report.bad(file, row, field_name, "missing value")
        return None
    if not isinstance(value, str):
        report.bad(file, row, field_name, f"expected text, got {type(value).__name__}")
        return None
    if not _is_utf8(value):
        report.bad(file, row, field_name, "text is not valid UTF-8")
        return None
    return value


def clean_text(value: Any, file: Path, row: str, field_name: str, report: Reporter) -> str | None:
    """A caption with whitespace normalised, or None (reported) if it is missing, empty or not UTF-8."""
    value = _plain_text(value, file, row, field_name, report)
    if value is None:
        return None
    text = " ".join(value.split())
    if not text:
        report.bad(file, row, field_name, "empty caption")
        return None
    return text


def clean_id(value: Any, file: Path, row: str, field_name: str, report: Reporter) -> str | None:
    """A video id that is usable as a file name, or None (reported)."""
    value = _plain_text(value, file, row, field_name, report)
    if value is None:
        return None
    video_id = value.strip()
    if not video_id:
        report.bad(file, row, field_name, "empty video id")
        return None
    if "/" in video_id or "\\" in video_id or "\0" in video_id or video_id in (".", ".."):
        report.bad(file, row, field_name, f"video id {short(video_id)} is not a plain file name")
        return None
    return video_id


def get_key(entry: Any, key: str, file: Path, row: str, report: Reporter) -> Any:
    """``entry[key]`` of a JSON object, or ``MISSING`` (reported) if the entry is no object or lacks the key."""
    if not isinstance(entry, dict):
        report.bad(file, row, key, f"expected a JSON object, got {type(entry).__name__}")
        return MISSING
    if key not in entry:
        report.bad(file, row, key, "missing key")
        return MISSING
    return entry[key]


# ----------------------------------------------------------------------------- videos


def first_existing(candidates: list[Path]) -> Path | None:
    """The first candidate path that exists."""
    return next((path for path in candidates if path.exists()), None)


def video_with_ext(video_dir: Path, stem: str, exts: tuple[str, ...]) -> Path:
    """``video_dir/stem<ext>`` for the first of ``exts`` that exists, else with the first of ``exts``."""
    found = first_existing([video_dir / f"{stem}{ext}" for ext in exts])
    return found or video_dir / f"{stem}{exts[0]}"


def extensions(video_ext: str | None, native: tuple[str, ...]) -> tuple[str, ...]:
    """The extensions to look for: ``video_ext`` when given (``data.video_ext``), else the dataset's ``native`` ones."""
    return (video_ext,) if video_ext else native


def video_ok(path: Path, check: bool, file: Path, row: str, report: Reporter) -> bool:
    """Whether to keep a video; a missing file is a bad item only when ``check`` is set."""
    if check and not path.is_file():
        report.bad(file, row, "video", f"video file not found: {path}")
        return False
    return True


# ----------------------------------------------------------------------------- assembling a split


class SplitBuilder:
    """Collects videos (in first-seen order) and their captions, then freezes a RetrievalSplit."""

    def __init__(self, dataset: str, name: str, source: tuple[Path, ...] = ()) -> None:
        self.dataset, self.name, self.source = dataset, name, tuple(str(p) for p in source)
        self.index: dict[str, int] = {}
        self.paths: list[Path] = []
        self.captions: list[str] = []
        self.caption_video: list[int] = []

    def add(self, video_id: str, path: Path, captions: list[str]) -> None:
        """Add captions of one video (registering the video the first time it is seen)."""
        if video_id not in self.index:
            self.index[video_id] = len(self.paths)
            self.paths.append(path)
        self.captions.extend(captions)
        self.caption_video.extend([self.index[video_id]] * len(captions))

    def build(self, report: Reporter) -> RetrievalSplit:
        """The frozen split, with everything that was skipped."""
        return RetrievalSplit(
            dataset=self.dataset,
            name=self.name,
            video_ids=tuple(self.index),
            video_paths=tuple(self.paths),
            captions=tuple(self.captions),
            caption_video=tuple(self.caption_video),
            skipped=tuple(report.skipped),
            source=self.source,
        )


# ----------------------------------------------------------------------------- validation carving


def carve(ids: list[str], val_size: int, seed: int) -> set[str]:
    """Deterministically pick ``val_size`` ids: the smallest seeded hashes (independent of file order)."""
    if not 0 <= val_size < len(ids):
        raise ValueError(f"val_size={val_size} (data.val_size) must be in [0, {len(ids)}): there are {len(ids)} training videos")
    ranked = sorted(ids, key=lambda video_id: _seeded_hash(seed, video_id))
    return set(ranked[:val_size])


def _seeded_hash(seed: int, text: str) -> str:
    """A stable hash of ``text`` under ``seed``: sha256 of "seed:text" (the same on every machine)."""
    return hashlib.sha256(f"{seed}:{text}".encode("utf-8", "surrogatepass")).hexdigest()


def refuse_test_overlap(val_ids: set[str], test_ids: set[str], val_file: Path, test_file: Path) -> None:
    """Refuse a validation split that shares a video with the test split."""
    shared = sorted(val_ids & test_ids)
    if shared:
        reason = f"validation videos overlap the test split {test_file}, e.g. {shared[0]!r}"
        raise fail(val_file, "file", "video_id", reason)
