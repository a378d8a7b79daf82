"""benchmarks/gpu_check.py: the CPU smoke run prints every row with positive figures; without CUDA it stops in one line."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SMOKE_ROWS = ["train step, fp32", "train step, bf16 autocast", "cache build, fp32", "cache build, bf16 autocast",
              "decode, 0 workers", "decode, 2 workers", "evaluation, encode once"]
UNITS = {"train step": "s/step", "cache build": "frames/s", "decode": "clips/s", "evaluation": "s"}


@pytest.fixture
def gpu_check(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def table_rows(text: str) -> dict[str, list[str]]:
    """measurement -> its cells, from the printed table (cells separated by ' | ')."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) == 5 and cells[0] != "measurement":
            rows[cells[0]] = cells
    return rows


def test_smoke_prints_every_row_with_positive_numbers(gpu_check, capsys):
    threads = torch.get_num_threads()
    returned = gpu_check.main(["--smoke"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("python ") and f"torch {torch.__version__}" in out.splitlines()[0]
    assert "cuDNN" in out and "device CPU" in out
    rows = table_rows(out)
    assert list(rows) == SMOKE_ROWS
    for name, (_, value, unit, memory, setting) in rows.items():
        assert float(value) > 0, name
        assert unit == UNITS[name.split(",")[0]], name
        if name.startswith("decode"):
            assert memory == "-", name  # worker processes: no one peak to report
        else:
            assert float(memory) > 0, name
        assert setting, name
    assert [r.name for r in returned] == SMOKE_ROWS and all(r.value > 0 for r in returned)
    for name in ("decode, 0 workers", "decode, 2 workers"):  # every clip written went through the DataLoader
        assert rows[name][4].startswith(f"{gpu_check.SMOKE.clips} mp4 "), rows[name][4]
    assert torch.get_num_threads() == threads  # the one-thread smoke setting is undone


def test_without_cuda_it_stops_with_one_line(gpu_check, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        gpu_check.main([])
    message = str(stop.value.code)
    assert "\n" not in message and "no CUDA device" in message and "--smoke" in message


def test_missing_packages_are_named_in_one_line(gpu_check, monkeypatch):
    assert gpu_check.missing_packages() == []
    monkeypatch.setitem(gpu_check.REQUIRED, "no_such_module_xyz", "no-such-package")
    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--smoke"])
    message = str(stop.value.code)
    assert "\n" not in message and message.endswith("(pip install --no-deps their wheels; see the docstring of benchmarks/gpu_check.py)")
    assert "missing Python packages: no-such-package " in message


def test_a_failing_part_becomes_one_row_saying_why(gpu_check, capsys):
    def broken():
        raise RuntimeError("DataLoader worker (pid 7) is killed by signal: Bus error.\nmore detail")

    rows = gpu_check.measured("decode", broken)
    assert [(r.name, r.value) for r in rows] == [("decode", None)]
    assert rows[0].note == "failed: RuntimeError: DataLoader worker (pid 7) is killed by signal: Bus error."
    assert "decode: - -" in capsys.readouterr().out
