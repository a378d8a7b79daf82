"""Refuse notebooks committed with outputs: ``python tools/notebook_check.py FILE.ipynb ...`` (a pre-commit hook)."""
from __future__ import annotations

import json
import sys


def dirty_cells(path: str) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    with open(path, encoding="utf-8") as f:
        cells = json.load(f).get("cells", [])
    return [i for i, c in enumerate(cells)
            if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def main(argv: list[str] | None = None) -> int:
    status = 0
    for path in sys.argv[1:] if argv is None else argv:
        cells = dirty_cells(path)
        if cells:
            print(f"{path}: cells {cells} have outputs; clear them before committing")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
