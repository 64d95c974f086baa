"""Threads under `accelerate launch` on a CPU machine: available cores unless the user chose (cpu_threads)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pvt_hf.cpu_threads import available_cores

PRINT_THREADS = """
import os
from pvt_hf.cpu_threads import use_available_cores
given = os.environ["OMP_NUM_THREADS"]
print("threads", given, use_available_cores())
"""


def launched_threads(tmp_path, *launch_args: str, **env: str) -> tuple[int, int]:
    """(OMP_NUM_THREADS as accelerate launch exports it, the threads torch uses after use_available_cores)."""
    script = tmp_path / "threads.py"
    script.write_text(PRINT_THREADS)
    accelerate = [str(Path(sys.executable).parent / "accelerate"), "launch"]
    environ = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
    environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU machine, wherever the test runs
    done = subprocess.run(
        [*accelerate, *launch_args, str(script)], capture_output=True, text=True, env=environ, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    given, used = done.stdout.split("threads")[-1].split()
    return int(given), int(used)


@pytest.mark.slow
@pytest.mark.skipif(available_cores() < 2, reason="one core: 1 thread either way")
def test_accelerate_launch_uses_all_cores_unless_the_user_chose(tmp_path):
    assert launched_threads(tmp_path) == (1, available_cores())  # accelerate's 1, replaced
    assert launched_threads(tmp_path, OMP_NUM_THREADS="1") == (1, 1)
    assert launched_threads(tmp_path, "--num_cpu_threads_per_process", "1") == (1, 1)


def test_without_a_launcher_threads_stay_as_they_are():
    import torch

    from pvt_hf.cpu_threads import use_available_cores

    before = torch.get_num_threads()
    assert use_available_cores() == before  # pytest is no launcher


@pytest.mark.parametrize(
    "argv, launcher_env, expected",
    [
        (["accelerate", "launch", "train.py"], {}, 4),  # accelerate's fallback 1: 8 cores / 2 local processes
        (["accelerate-launch", "train.py"], {}, 4),
        (["accelerate", "launch", "--cpu", "train.py"], {}, None),  # --cpu derived the count itself: kept
        (["accelerate", "launch", "--num_cpu_threads_per_process=1", "train.py"], {}, None),  # the user's
        (["accelerate", "launch", "train.py"], {"OMP_NUM_THREADS": "1"}, None),  # the user's, inherited
    ],
)
def test_only_the_launchers_fallback_is_replaced(monkeypatch, argv, launcher_env, expected):
    import torch

    from pvt_hf import cpu_threads

    monkeypatch.setattr(cpu_threads, "_launcher_process", lambda: (argv, launcher_env))
    monkeypatch.setattr(cpu_threads, "available_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    before = torch.get_num_threads()
    try:
        assert cpu_threads.use_available_cores() == (before if expected is None else expected)
    finally:
        torch.set_num_threads(before)
