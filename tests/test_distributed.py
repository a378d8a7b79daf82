"""torchrun with 2 CPU processes (gloo): one step equals the single-process step on the same global batch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # two torchrun processes

SCRIPT = Path(__file__).with_name("ddp_step.py")


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_step_equals_single_process_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "single")], check=True, env=env, timeout=300)
    torchrun = Path(sys.executable).parent / "torchrun"
    for _ in range(2):
        r = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", str(SCRIPT), str(tmp_path / "ddp")],
                           env=env, timeout=300, capture_output=True, text=True)
        # Rarely (about 1 run in 30 on a loaded 2-core machine) gloo aborts a process in its teardown,
        # after the step and the results: "terminate called without an active exception" from a C++
        # thread at exit. That one failure gets a second run; any other failure, or two, fails the test.
        teardown = "terminate called without an active exception" in r.stderr and (tmp_path / "ddp" / "loss.txt").is_file()
        if r.returncode == 0 or not teardown:
            break
        shutil.rmtree(tmp_path / "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    single = float((tmp_path / "single" / "loss.txt").read_text())
    ddp = float((tmp_path / "ddp" / "loss.txt").read_text())
    assert abs(single - ddp) < 1e-5
    # the gradients every process applies equal the single-process gradients of the global loss
    a, b = load_file(str(tmp_path / "single" / "grads.safetensors")), load_file(str(tmp_path / "ddp" / "grads.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
