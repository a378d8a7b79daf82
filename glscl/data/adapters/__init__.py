"""Dataset adapters: the five text-video benchmarks, read from their native files.

Each ``load_<dataset>(root, split, ...)`` reads the annotation files exactly as the dataset
ships them and returns a :class:`RetrievalSplit` for ``split`` in ("train", "val", "test"):

==============  ==========================================  =======================================
dataset         files under ``root``                        captions
==============  ==========================================  =======================================
msrvtt          MSRVTT_data.json, MSRVTT_train.9k.csv,       train/val: every caption of a video;
                MSRVTT_JSFUSION_test.csv (1k-A test),        test: one caption per video (1k-A)
                optional MSRVTT_val.csv
msvd            {train,val,test}_list.txt, raw-captions.pkl  every caption of a video (multi-caption)
didemo          {train,val,test}_data.json                   one paragraph per video
lsmdc           LSMDC16_annos_{training,val}.csv,            one caption per clip
                LSMDC16_challenge_1000_publictect.csv
activitynet     train.json, val_1.json                       one paragraph per video
==============  ==========================================  =======================================

Validation splits. MSVD, DiDeMo and LSMDC ship one. MSR-VTT uses ``MSRVTT_val.csv`` when present
and otherwise carves ``val_size`` videos out of the 9k training list; ActivityNet has no labelled
test set, so its test split is ``val_1.json`` (the standard paragraph-retrieval protocol) and its
validation split is carved out of ``train.json``. Carving is deterministic (a seeded hash of each
video id), the carved videos leave the training split, and a validation split that shares a video
with the test split is refused: model selection never looks at the test set.

Bad input. A missing annotation file, a file-level problem (invalid JSON, missing CSV column,
a pickle that is not a plain dict) always raises :class:`DatasetError`. A bad item (missing key,
empty caption, text that is not UTF-8, a video id the caption file does not know) raises
``DatasetError`` too, with one line naming the file, the row and the field; with
``skip_bad=True`` the item is skipped instead and recorded in ``RetrievalSplit.skipped`` as
``(file, row, reason)``. Nothing is dropped silently. Video files are not opened here (the decoder
reports missing ones); ``check_videos=True`` also treats a missing video file as a bad item.

Only the rows a split uses are validated: loading "train" does not fail on a bad test caption.
Caption whitespace is normalised (runs of spaces and newlines become one space).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import pickletools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glscl.data.splits import RetrievalSplit

__all__ = [
    "ADAPTERS",
    "SPLITS",
    "DatasetError",
    "load_activitynet",
    "load_dataset",
    "load_didemo",
    "load_lsmdc",
    "load_msrvtt",
    "load_msvd",
    "lsmdc_movie",
]

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """Bad dataset input; the message is one line naming the file, the row and the field."""


# ----------------------------------------------------------------------------- bad-input reports


@dataclass
class _Reporter:
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


def _fail(file: Path, row: str, field_name: str, reason: str) -> DatasetError:
    """A file-level error (never skippable)."""
    return DatasetError(_one_line(f"{file}: {row}: {field_name}: {reason}"))


def _short(value: Any, limit: int = 60) -> str:
    """A short repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- reading files


def _read_text(path: Path) -> str:
    """The whole file as text; bytes that are not UTF-8 become lone surrogates (checked per row)."""
    if not path.is_file():
        raise _fail(path, "file", "path", "missing annotation file")
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _is_utf8(text: str) -> bool:
    """Whether a string holds only real characters (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error is a file-level ``DatasetError`` naming the line."""
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise _fail(path, f"line {err.lineno}", "json", err.msg) from None


def _read_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield ``(line number, row)`` of a CSV file with a header that has the ``required`` columns."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in required if name not in header]
    if missing:
        raise _fail(path, "line 1", "header", f"missing column {missing[0]!r} (found {_short(header)})")
    reader.fieldnames = header
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error as err:
        raise _fail(path, f"line {reader.line_num}", "csv", str(err)) from None


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` of a text file, end-of-line removed, blank lines skipped."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            yield number, line


# ----------------------------------------------------------------------------- checking values


_MISSING = object()  # returned by _get for a missing key (already reported)


def _plain_text(value: Any, file: Path, row: str, field_name: str, report: _Reporter) -> str | None:
    """``value`` if it is UTF-8 text, else None (reported unless already reported as missing)."""
    if value is _MISSING:
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


def _clean_text(value: Any, file: Path, row: str, field_name: str, report: _Reporter) -> str | None:
    """A caption with whitespace normalised, or None (reported) if it is missing, empty or not UTF-8."""
    value = _plain_text(value, file, row, field_name, report)
    if value is None:
        return None
    text = " ".join(value.split())
    if not text:
        report.bad(file, row, field_name, "empty caption")
        return None
    return text


def _clean_id(value: Any, file: Path, row: str, field_name: str, report: _Reporter) -> str | None:
    """A video id that is usable as a file name, or None (reported)."""
    value = _plain_text(value, file, row, field_name, report)
    if value is None:
        return None
    video_id = value.strip()
    if not video_id:
        report.bad(file, row, field_name, "empty video id")
        return None
    if "/" in video_id or "\\" in video_id or "\0" in video_id or video_id in (".", ".."):
        report.bad(file, row, field_name, f"video id {_short(video_id)} is not a plain file name")
        return None
    return video_id


def _get(entry: Any, key: str, file: Path, row: str, report: _Reporter) -> Any:
    """``entry[key]`` of a JSON object, or ``_MISSING`` (reported) if the entry is no object or lacks the key."""
    if not isinstance(entry, dict):
        report.bad(file, row, key, f"expected a JSON object, got {type(entry).__name__}")
        return _MISSING
    if key not in entry:
        report.bad(file, row, key, "missing key")
        return _MISSING
    return entry[key]


def _check_split(split: str) -> None:
    """Refuse split names other than train / val / test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


# ----------------------------------------------------------------------------- videos


def _first_existing(candidates: list[Path]) -> Path | None:
    """The first candidate path that exists."""
    return next((path for path in candidates if path.exists()), None)


def _video_with_ext(video_dir: Path, stem: str, exts: tuple[str, ...], default_ext: str) -> Path:
    """``video_dir/stem<ext>`` for the first extension that exists, else with ``default_ext``."""
    found = _first_existing([video_dir / f"{stem}{ext}" for ext in exts])
    return found or video_dir / f"{stem}{default_ext}"


def _video_ok(path: Path, check: bool, file: Path, row: str, report: _Reporter) -> bool:
    """Whether to keep a video; a missing file is a bad item only when ``check`` is set."""
    if check and not path.is_file():
        report.bad(file, row, "video", f"video file not found: {path}")
        return False
    return True


# ----------------------------------------------------------------------------- assembling a split


class _SplitBuilder:
    """Collects videos (in first-seen order) and their captions, then freezes a RetrievalSplit."""

    def __init__(self, dataset: str, name: str) -> None:
        self.dataset, self.name = dataset, name
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

    def build(self, report: _Reporter) -> RetrievalSplit:
        """The frozen split, with everything that was skipped."""
        return RetrievalSplit(
            dataset=self.dataset,
            name=self.name,
            video_ids=tuple(self.index),
            video_paths=tuple(self.paths),
            captions=tuple(self.captions),
            caption_video=tuple(self.caption_video),
            skipped=tuple(report.skipped),
        )


# ----------------------------------------------------------------------------- validation carving


def _carve(ids: list[str], val_size: int, seed: int) -> set[str]:
    """Deterministically pick ``val_size`` ids: the smallest seeded hashes (independent of file order)."""
    if not 0 <= val_size < len(ids):
        raise ValueError(f"val_size={val_size} must be in [0, {len(ids)}) (the number of training videos)")
    ranked = sorted(ids, key=lambda video_id: _seeded_hash(seed, video_id))
    return set(ranked[:val_size])


def _seeded_hash(seed: int, text: str) -> str:
    """A stable hash of ``text`` under ``seed`` (the same on every machine and Python version)."""
    return hashlib.sha256(f"{seed}:{text}".encode("utf-8", "surrogatepass")).hexdigest()


def _refuse_test_overlap(val_ids: set[str], test_ids: set[str], val_file: Path, test_file: Path) -> None:
    """Refuse a validation split that shares a video with the test split."""
    shared = sorted(val_ids & test_ids)
    if shared:
        reason = f"validation videos overlap the test split {test_file}, e.g. {shared[0]!r}"
        raise _fail(val_file, "file", "video_id", reason)


# ============================================================================= MSR-VTT

_MSRVTT_JSON = "MSRVTT_data.json"
_MSRVTT_TRAIN = "MSRVTT_train.9k.csv"
_MSRVTT_VAL = "MSRVTT_val.csv"
_MSRVTT_TEST = "MSRVTT_JSFUSION_test.csv"


def load_msrvtt(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str = ".mp4",
    val_size: int = 500,
    seed: int = 0,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """MSR-VTT: train on every caption of the 9k videos, test on the 1k-A set (one caption per video).

    Validation is ``MSRVTT_val.csv`` if present, else ``val_size`` videos carved from the 9k list
    (deterministic given ``seed``); either way those videos leave the training split.
    Videos are ``{video_dir or root/'videos'}/{video_id}{video_ext}``.
    """
    _check_split(split)
    root = Path(root)
    videos = Path(video_dir) if video_dir else root / "videos"
    report = _Reporter(skip_bad)
    builder = _SplitBuilder("msrvtt", split)
    if split == "test":
        _msrvtt_test(root / _MSRVTT_TEST, videos, video_ext, check_videos, builder, report)
    else:
        list_file, rows = _msrvtt_split_rows(root, split, val_size, seed, report)
        captions = _msrvtt_captions(root / _MSRVTT_JSON, {vid for vid, _ in rows}, report)
        for video_id, line in rows:
            if video_id not in captions:
                reason = f"unknown video {video_id!r}: no captions in {_MSRVTT_JSON}"
                report.bad(list_file, f"line {line}", "video_id", reason)
                continue
            path = videos / f"{video_id}{video_ext}"
            if _video_ok(path, check_videos, list_file, f"line {line}", report):
                builder.add(video_id, path, captions[video_id])
    return builder.build(report)


def _msrvtt_split_rows(
    root: Path, split: str, val_size: int, seed: int, report: _Reporter
) -> tuple[Path, list[tuple[str, int]]]:
    """The (video id, line) rows of the train or val split, and the file they come from."""
    train_file, val_file, test_file = root / _MSRVTT_TRAIN, root / _MSRVTT_VAL, root / _MSRVTT_TEST
    train_rows = _read_video_id_csv(train_file, report)
    if val_file.is_file():
        val_rows = _read_video_id_csv(val_file, report)
        val_ids, val_source = {vid for vid, _ in val_rows}, val_file
    else:
        val_ids, val_source = _carve([vid for vid, _ in train_rows], val_size, seed), train_file
        val_rows = [(vid, line) for vid, line in train_rows if vid in val_ids]
    if split == "train":
        return train_file, [(vid, line) for vid, line in train_rows if vid not in val_ids]
    if test_file.is_file():
        _refuse_test_overlap(val_ids, _msrvtt_test_ids(test_file), val_source, test_file)
    return val_source, val_rows


def _read_video_id_csv(path: Path, report: _Reporter) -> list[tuple[str, int]]:
    """(video id, line) of a CSV with a ``video_id`` column; duplicates are bad items."""
    rows = (
        (_clean_id(row["video_id"], path, f"line {line}", "video_id", report), line)
        for line, row in _read_csv(path, ("video_id",))
    )
    return _drop_duplicates(path, [(vid, line) for vid, line in rows if vid is not None], report)


def _drop_duplicates(path: Path, rows: list[tuple[str, int]], report: _Reporter) -> list[tuple[str, int]]:
    """(video id, line) rows with repeated ids reported as bad items."""
    first_line: dict[str, int] = {}
    for video_id, line in rows:
        if video_id in first_line:
            reason = f"duplicate video {video_id!r} (first on line {first_line[video_id]})"
            report.bad(path, f"line {line}", "video_id", reason)
        else:
            first_line[video_id] = line
    return [(video_id, line) for video_id, line in first_line.items()]


def _msrvtt_captions(path: Path, wanted: set[str], report: _Reporter) -> dict[str, list[str]]:
    """Captions of the ``wanted`` videos from ``MSRVTT_data.json`` (``sentences[]``), in file order."""
    data = _read_json(path)
    sentences = data.get("sentences") if isinstance(data, dict) else None
    if not isinstance(sentences, list):
        raise _fail(path, "top level", "sentences", "expected a JSON object with a 'sentences' list")
    captions: dict[str, list[str]] = {}
    for index, entry in enumerate(sentences):
        row = f"sentences[{index}]"
        video_id = _clean_id(_get(entry, "video_id", path, row, report), path, row, "video_id", report)
        if video_id not in wanted:
            continue
        caption = _clean_text(_get(entry, "caption", path, row, report), path, row, "caption", report)
        if caption is not None:
            captions.setdefault(video_id, []).append(caption)
    return captions


def _msrvtt_test(
    path: Path, videos: Path, ext: str, check: bool, builder: _SplitBuilder, report: _Reporter
) -> None:
    """Fill ``builder`` from the 1k-A test CSV (``video_id``, ``sentence`` per row)."""
    for line, row in _read_csv(path, ("video_id", "sentence")):
        where = f"line {line}"
        video_id = _clean_id(row["video_id"], path, where, "video_id", report)
        caption = _clean_text(row["sentence"], path, where, "sentence", report) if video_id else None
        if video_id is None or caption is None:
            continue
        video = videos / f"{video_id}{ext}"
        if _video_ok(video, check, path, where, report):
            builder.add(video_id, video, [caption])


def _msrvtt_test_ids(path: Path) -> set[str]:
    """Video ids of the test CSV (bad rows ignored: this only guards against overlap)."""
    quiet = _Reporter(skip_bad=True)
    rows = _read_csv(path, ("video_id",))
    ids = (_clean_id(row["video_id"], path, f"line {line}", "video_id", quiet) for line, row in rows)
    return {video_id for video_id in ids if video_id}


# ============================================================================= MSVD

_MSVD_CAPTIONS = "raw-captions.pkl"

# Pickle opcodes that only build plain data (containers, strings, numbers). Anything else
# (globals, REDUCE, BUILD, object creation, extensions, persistent ids) is refused before loading.
_PLAIN_DATA_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP MEMOIZE PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET "
    "EMPTY_DICT DICT SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 "
    "TUPLE3 EMPTY_SET ADDITEMS FROZENSET NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 "
    "LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE "
    "BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8".split()
)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: it can only build builtin containers and scalars."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _load_untrusted_pickle(path: Path) -> Any:
    """Load a pickle that may be hostile: scan its opcodes, then unpickle with no globals allowed."""
    if not path.is_file():
        raise _fail(path, "file", "path", "missing annotation file")
    data = path.read_bytes()
    try:
        for opcode, _, position in pickletools.genops(data):
            if opcode.name not in _PLAIN_DATA_OPCODES:
                reason = f"refused opcode {opcode.name} (only plain data is allowed)"
                raise _fail(path, f"byte {position}", "pickle", reason)
        unpickler = _RestrictedUnpickler(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
        return unpickler.load()
    except DatasetError:
        raise
    except Exception as err:  # nothing can execute here, so any failure means a malformed file
        raise _fail(path, "file", "pickle", f"cannot be read as plain data: {err}") from None


def load_msvd(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str = ".avi",
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """MSVD: ``{split}_list.txt`` ids with every caption from ``raw-captions.pkl`` (multi-caption).

    The pickle is never trusted: it is loaded with no globals allowed and validated as
    dict[str, list[list[str]]]; a caption is its tokens joined by spaces. Videos are
    ``{video_dir or root/'videos'}/{id}.avi`` or ``.mp4``, whichever exists (else ``video_ext``).
    """
    _check_split(split)
    root = Path(root)
    videos = Path(video_dir) if video_dir else root / "videos"
    report = _Reporter(skip_bad)
    list_file = root / f"{split}_list.txt"
    rows = _read_id_list(list_file, report)
    captions = _msvd_captions(root / _MSVD_CAPTIONS, {vid for vid, _ in rows}, report)
    builder = _SplitBuilder("msvd", split)
    for video_id, line in rows:
        where = f"line {line}"
        if video_id not in captions:
            report.bad(list_file, where, "video_id", f"unknown video {video_id!r}: not in {_MSVD_CAPTIONS}")
            continue
        if not captions[video_id]:
            reason = f"video {video_id!r} has no usable caption in {_MSVD_CAPTIONS}"
            report.bad(list_file, where, "video_id", reason)
            continue
        path = _video_with_ext(videos, video_id, (video_ext, ".avi", ".mp4"), video_ext)
        if _video_ok(path, check_videos, list_file, where, report):
            builder.add(video_id, path, captions[video_id])
    return builder.build(report)


def _read_id_list(path: Path, report: _Reporter) -> list[tuple[str, int]]:
    """(video id, line) of a text file with one video id per line."""
    rows = ((_clean_id(text, path, f"line {line}", "video_id", report), line) for line, text in _read_lines(path))
    return _drop_duplicates(path, [(vid, line) for vid, line in rows if vid is not None], report)


def _msvd_captions(path: Path, wanted: set[str], report: _Reporter) -> dict[str, list[str]]:
    """Captions of the ``wanted`` videos from the untrusted ``raw-captions.pkl``."""
    data = _load_untrusted_pickle(path)
    if not isinstance(data, dict):
        reason = f"expected dict[str, list[list[str]]], got {type(data).__name__}"
        raise _fail(path, "top level", "structure", reason)
    captions: dict[str, list[str]] = {}
    for key, value in data.items():
        row = f"entry {_short(key)}"
        if not isinstance(key, str):
            report.bad(path, row, "video id", f"expected str, got {type(key).__name__}")
        elif key in wanted and not isinstance(value, list):
            report.bad(path, row, "captions", f"expected a list of token lists, got {type(value).__name__}")
        elif key in wanted:
            texts = (_join_tokens(tokens, path, row, f"captions[{j}]", report) for j, tokens in enumerate(value))
            captions[key] = [text for text in texts if text is not None]
    return captions


def _join_tokens(tokens: Any, file: Path, row: str, field_name: str, report: _Reporter) -> str | None:
    """One MSVD caption: its list of str tokens joined by spaces, or None (reported)."""
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        report.bad(file, row, field_name, f"expected a list of str tokens, got {_short(tokens)}")
        return None
    return _clean_text(" ".join(tokens), file, row, field_name, report)


# ============================================================================= DiDeMo


def load_didemo(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """DiDeMo: ``{split}_data.json``; all descriptions of a video, in file order, form one paragraph.

    Videos are ``{video_dir or root/'videos'}/{video}`` as given, or with ``.mp4`` appended
    (whichever exists; when neither does, as given if it has an extension, else with ``.mp4``).
    """
    _check_split(split)
    root = Path(root)
    videos = Path(video_dir) if video_dir else root / "videos"
    report = _Reporter(skip_bad)
    path = root / f"{split}_data.json"
    builder = _SplitBuilder("didemo", split)
    paragraphs, first_row = _didemo_paragraphs(path, report)
    for video_id, descriptions in paragraphs.items():
        if not descriptions:
            report.bad(path, first_row[video_id], "description", f"video {video_id!r} has no usable description")
            continue
        video = _didemo_video(videos, video_id)
        if _video_ok(video, check_videos, path, first_row[video_id], report):
            builder.add(video_id, video, [" ".join(descriptions)])
    return builder.build(report)


def _didemo_paragraphs(path: Path, report: _Reporter) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Descriptions of each video in file order, and the row where each video first appears."""
    entries = _read_json(path)
    if not isinstance(entries, list):
        reason = f"expected a JSON list of entries, got {type(entries).__name__}"
        raise _fail(path, "top level", "structure", reason)
    paragraphs: dict[str, list[str]] = {}
    first_row: dict[str, str] = {}
    for index, entry in enumerate(entries):
        row = f"entry {index}"
        video_id = _clean_id(_get(entry, "video", path, row, report), path, row, "video", report)
        if video_id is None:
            continue
        first_row.setdefault(video_id, row)
        description = _clean_text(_get(entry, "description", path, row, report), path, row, "description", report)
        paragraphs.setdefault(video_id, []).extend([description] if description else [])
    return paragraphs, first_row


def _didemo_video(videos: Path, name: str) -> Path:
    """The video file of a DiDeMo entry: the name as given, else with ``.mp4`` appended."""
    as_given, with_mp4 = videos / name, videos / f"{name}.mp4"
    default = as_given if Path(name).suffix else with_mp4
    return _first_existing([as_given, with_mp4]) or default


# ============================================================================= LSMDC

_LSMDC_FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}
_LSMDC_COLUMNS = 6  # clip id, start, end, start aligned, end aligned, sentence


def load_lsmdc(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str = ".avi",
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """LSMDC: tab-separated rows (no header), one caption per clip.

    Videos are ``{video_dir or root/'videos'}/{movie}/{clip_id}{video_ext}``, where the movie is the
    clip id without its final ``_<timestamp>`` part (see :func:`lsmdc_movie`).
    """
    _check_split(split)
    root = Path(root)
    videos = Path(video_dir) if video_dir else root / "videos"
    report = _Reporter(skip_bad)
    path = root / _LSMDC_FILES[split]
    builder = _SplitBuilder("lsmdc", split)
    for line, text in _read_lines(path):
        where = f"line {line}"
        columns = text.split("\t", _LSMDC_COLUMNS - 1)
        if len(columns) != _LSMDC_COLUMNS:
            reason = f"expected {_LSMDC_COLUMNS} tab-separated columns, got {len(columns)}"
            report.bad(path, where, "columns", reason)
            continue
        clip_id = _clean_id(columns[0], path, where, "clip id", report)
        movie = lsmdc_movie(clip_id) if clip_id else None
        if clip_id and movie is None:
            reason = f"cannot find the movie in {clip_id!r} (expected <movie>_<timestamp>)"
            report.bad(path, where, "clip id", reason)
        caption = _clean_text(columns[-1], path, where, "sentence", report) if movie else None
        if caption is None:
            continue
        video = videos / movie / f"{clip_id}{video_ext}"
        if _video_ok(video, check_videos, path, where, report):
            builder.add(clip_id, video, [caption])
    return builder.build(report)


def lsmdc_movie(clip_id: str) -> str | None:
    """The movie folder of an LSMDC clip id: everything before the final ``_<timestamp>``.

    ``"0001_American_Beauty_00.00.51.926-00.00.54.129"`` -> ``"0001_American_Beauty"``.
    """
    movie, _, timestamp = clip_id.rpartition("_")
    return movie if movie and timestamp else None


# ============================================================================= ActivityNet Captions

_ANET_TRAIN = "train.json"
_ANET_TEST = "val_1.json"
_ANET_EXTS = (".mp4", ".mkv", ".webm")


def load_activitynet(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str = ".mp4",
    val_size: int = 500,
    seed: int = 0,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """ActivityNet Captions: one paragraph (all sentences, in order) per video.

    There is no labelled test set: "test" is ``val_1.json`` (the standard paragraph-to-video
    protocol) and "val" is ``val_size`` videos carved from ``train.json`` (deterministic given
    ``seed``; they leave "train"). Videos are ``v_<id>`` with ``.mp4``, ``.mkv`` or ``.webm``,
    whichever exists (else ``video_ext``); ids that already start with ``v_`` are not prefixed again.
    """
    _check_split(split)
    root = Path(root)
    videos = Path(video_dir) if video_dir else root / "videos"
    report = _Reporter(skip_bad)
    path = root / (_ANET_TEST if split == "test" else _ANET_TRAIN)
    data = _anet_read(path)
    keep = _anet_selection(root, split, list(data), val_size, seed)
    builder = _SplitBuilder("activitynet", split)
    for key, entry in data.items():
        if not keep(key):
            continue
        row = f"entry {_short(key)}"
        video_id = _clean_id(key, path, row, "video id", report)
        if video_id is None:
            continue
        paragraph = _anet_paragraph(_get(entry, "sentences", path, row, report), path, row, report)
        if paragraph is None:
            continue
        stem = video_id if video_id.startswith("v_") else f"v_{video_id}"
        video = _video_with_ext(videos, stem, (video_ext, *_ANET_EXTS), video_ext)
        if _video_ok(video, check_videos, path, row, report):
            builder.add(video_id, video, [paragraph])
    return builder.build(report)


def _anet_read(path: Path) -> dict[str, Any]:
    """An ActivityNet Captions JSON file: video id -> {sentences, timestamps, duration}."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise _fail(path, "top level", "structure", f"expected a JSON object of videos, got {type(data).__name__}")
    return data


def _anet_selection(
    root: Path, split: str, train_ids: list[str], val_size: int, seed: int
) -> Callable[[str], bool]:
    """Which keys of the file belong to ``split`` (train and val share ``train.json``)."""
    if split == "test":
        return lambda key: True
    val_ids = _carve(train_ids, val_size, seed)
    if split == "val" and (root / _ANET_TEST).is_file():
        _refuse_test_overlap(val_ids, set(_anet_read(root / _ANET_TEST)), root / _ANET_TRAIN, root / _ANET_TEST)
    return (lambda key: key in val_ids) if split == "val" else (lambda key: key not in val_ids)


def _anet_paragraph(sentences: Any, file: Path, row: str, report: _Reporter) -> str | None:
    """All sentences of one video joined into a paragraph, or None (reported) if none is usable."""
    if sentences is _MISSING:
        return None
    if not isinstance(sentences, list) or not sentences:
        report.bad(file, row, "sentences", f"expected a non-empty list of sentences, got {_short(sentences)}")
        return None
    cleaned = (_clean_text(text, file, row, f"sentences[{j}]", report) for j, text in enumerate(sentences))
    kept = [text for text in cleaned if text is not None]
    if not kept:
        report.bad(file, row, "sentences", "no usable sentence")
        return None
    return " ".join(kept)


# ============================================================================= dispatcher

ADAPTERS: dict[str, Callable[..., RetrievalSplit]] = {
    "msrvtt": load_msrvtt,
    "msvd": load_msvd,
    "didemo": load_didemo,
    "lsmdc": load_lsmdc,
    "activitynet": load_activitynet,
}


def load_dataset(name: str, root: str | Path, split: str, **kwargs: Any) -> RetrievalSplit:
    """Load ``split`` of the dataset called ``name`` (e.g. "msrvtt", "MSR-VTT") from ``root``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[key](root, split, **kwargs)
