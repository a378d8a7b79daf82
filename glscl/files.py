"""Writing files so that a reader never sees a part of one: every file of the package is written here.

``atomic_write(path, write)`` writes through a temporary name unique to the process and renames it
over ``path``; ``write_json`` is the JSON case. Any failure leaves ``path`` as it was, and an OS
error (a full disk, a read-only file system, a permission) names ``path``.
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


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON with ``atomic_write``."""
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
