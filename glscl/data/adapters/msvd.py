"""MSVD: ``{split}_list.txt`` video ids and every caption from the untrusted ``raw-captions.pkl``."""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

from glscl.data.adapters.common import (
    DatasetError,
    Reporter,
    SplitBuilder,
    clean_id,
    clean_text,
    drop_duplicates,
    extensions,
    fail,
    open_split,
    read_lines,
    short,
    video_ok,
    video_with_ext,
)
from glscl.data.splits import RetrievalSplit

CAPTIONS_FILE = "raw-captions.pkl"

# Pickle opcodes that only build plain data (containers, strings, numbers). Anything else
# (globals, REDUCE, BUILD, object creation, extensions, persistent ids) is refused before loading.
_PLAIN_DATA_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP MEMOIZE PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET "
    "EMPTY_DICT DICT SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 "
    "TUPLE3 EMPTY_SET ADDITEMS FROZENSET NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 "
    "LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE "
    "BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8".split()
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: it can only build builtin containers and scalars."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _load_untrusted_pickle(path: Path) -> Any:
    """Load a pickle that may be hostile: scan its opcodes, then unpickle with no globals allowed."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing annotation file")
    data = path.read_bytes()
    try:
        for opcode, _, position in pickletools.genops(data):
            if opcode.name not in _PLAIN_DATA_OPCODES:
                reason = f"refused opcode {opcode.name} (only plain data is allowed)"
                raise fail(path, f"byte {position}", "pickle", reason)
        unpickler = RestrictedUnpickler(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")
        return unpickler.load()
    except DatasetError:
        raise
    except Exception as err:  # nothing can execute here, so any failure means a malformed file
        raise fail(path, "file", "pickle", f"cannot be read as plain data: {err}") from None


def load_msvd(
    root: str | Path,
    split: str,
    *,
    video_dir: str | Path | None = None,
    video_ext: str | None = None,
    skip_bad: bool = False,
    check_videos: bool = False,
) -> RetrievalSplit:
    """MSVD: ``{split}_list.txt`` ids with every caption from ``raw-captions.pkl`` (multi-caption).

    The pickle is never trusted: it is loaded with no globals allowed and validated as
    dict[str, list[list[str]]]; a caption is its tokens joined by spaces. Videos are
    ``{video_dir or root/'videos'}/{id}{video_ext}``, or when it is None ``.avi`` or ``.mp4``,
    whichever exists (else ``.avi``).
    """
    root, videos, report = open_split(root, split, video_dir, skip_bad)
    list_file = root / f"{split}_list.txt"
    rows = _read_id_list(list_file, report)
    captions = _captions(root / CAPTIONS_FILE, {vid for vid, _ in rows}, report)
    builder = SplitBuilder("msvd", split, (list_file,))
    exts = extensions(video_ext, (".avi", ".mp4"))
    for video_id, line in rows:
        where = f"line {line}"
        if video_id not in captions:
            report.bad(list_file, where, "video_id", f"unknown video {video_id!r}: not in {CAPTIONS_FILE}")
            continue
        if not captions[video_id]:
            reason = f"video {video_id!r} has no usable caption in {CAPTIONS_FILE}"
            report.bad(list_file, where, "video_id", reason)
            continue
        path = video_with_ext(videos, video_id, exts)
        if video_ok(path, check_videos, list_file, where, report):
            builder.add(video_id, path, captions[video_id])
    return builder.build(report)


def _read_id_list(path: Path, report: Reporter) -> list[tuple[str, int]]:
    """(video id, line) of a text file with one video id per line."""
    rows = ((clean_id(text, path, f"line {line}", "video_id", report), line) for line, text in read_lines(path))
    return drop_duplicates(path, [(vid, line) for vid, line in rows if vid is not None], report)


def _captions(path: Path, wanted: set[str], report: Reporter) -> dict[str, list[str]]:
    """Captions of the ``wanted`` videos from the untrusted ``raw-captions.pkl``."""
    data = _load_untrusted_pickle(path)
    if not isinstance(data, dict):
        reason = f"expected dict[str, list[list[str]]], got {type(data).__name__}"
        raise fail(path, "top level", "structure", reason)
    captions: dict[str, list[str]] = {}
    for key, value in data.items():
        row = f"entry {short(key)}"
        if not isinstance(key, str):
            report.bad(path, row, "video id", f"expected str, got {type(key).__name__}")
        elif key in wanted and not isinstance(value, list):
            report.bad(path, row, "captions", f"expected a list of token lists, got {type(value).__name__}")
        elif key in wanted:
            texts = (_join_tokens(tokens, path, row, f"captions[{j}]", report) for j, tokens in enumerate(value))
            captions[key] = [text for text in texts if text is not None]
    return captions


def _join_tokens(tokens: Any, file: Path, row: str, field_name: str, report: Reporter) -> str | None:
    """One MSVD caption: its list of str tokens joined by spaces, or None (reported)."""
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        report.bad(file, row, field_name, f"expected a list of str tokens, got {short(tokens)}")
        return None
    return clean_text(" ".join(tokens), file, row, field_name, report)
