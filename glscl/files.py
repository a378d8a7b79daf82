"""Writing files so that a reader never sees a part of one: the package's one atomic writer.

``atomic_write(path, write)`` writes through a temporary name unique to the process and renames it
over ``path``; ``write_text`` and ``write_json`` are the text and JSON cases (CSV: pass
``lambda tmp: table.to_csv(tmp)``). Any failure leaves ``path`` as it was, and an OS error (a full
disk, a read-only file system, a permission) names ``path``. Every JSON, CSV, text, checkpoint or
tensor file that a reader may open while it is written goes through here; two writes are whole
folders or videos, renamed once complete (a feature cache, ``glscl.data.cache``; a world's mp4
files, which ffmpeg names by their extension, ``glscl.data.world.generator``).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (its name unique to this process), then
    rename it over ``path``: a reader sees the old file or the new one, never a part. On any failure
    (an error, a full disk, an interruption) the temporary file is removed and ``path`` is left as it
    was; an OS error names ``path`` (``OSError.filename``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        if isinstance(e, SafetensorError):  # safetensors reports an OS error as text: "... Os { code: 28, ... }"
            code = re.search(r"code: (\d+)", str(e))
            if code:
                raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` with ``atomic_write``."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """Write ``data`` as indented JSON with ``atomic_write`` (values JSON does not know as ``str``)."""
    write_text(path, json.dumps(data, indent=indent, default=str))
