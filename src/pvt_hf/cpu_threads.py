"""Threads per process: the cores a launched process is given, not the one thread a launcher leaves it.

`accelerate launch` (without `--cpu`, GPU or not) exports OMP_NUM_THREADS=1 to the script unless
the user set OMP_NUM_THREADS or `--num_cpu_threads_per_process` (accelerate/commands/launch.py,
`_validate_launch_command`: only `--cpu` derives a count, from physical cores); torchrun exports 1 for several
processes per node. The script cannot tell that 1 from a user's own 1 by its environment, so it reads the launcher's
(its parent process, as /proc shows it): a value the launcher inherited or was given on its command line is the
user's and stays.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["use_available_cores"]

_LAUNCHERS = (
    "accelerate",
    "accelerate-launch",
    "accelerate.commands.launch",
    "torchrun",
    "torch.distributed.run",
    "torch.distributed.launch",
)


def _launcher_process() -> tuple[list[str], dict[str, str]] | None:
    """The parent's command line and initial environment if the parent is a known launcher (None elsewhere, or where
    /proc cannot say, e.g. outside Linux)."""
    proc = Path("/proc", str(os.getppid()))
    try:
        argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        environ = (proc / "environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if not any(Path(arg).name in _LAUNCHERS or arg in _LAUNCHERS for arg in argv[:3]):
        return None
    return argv, dict(entry.split("=", 1) for entry in environ if "=" in entry)


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, which taskset and container CPU sets narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_available_cores() -> int:
    """Under a launcher that fell back to OMP_NUM_THREADS=1, run torch on available cores / local processes (at least
    1); a value the user set (OMP_NUM_THREADS in the launcher's environment, `--num_cpu_threads_per_process`), the
    count accelerate's `--cpu` derives, and any run without a launcher keep their threads. Returns the number of
    threads torch uses."""
    launcher = _launcher_process() if os.environ.get("OMP_NUM_THREADS") == "1" else None  # the launchers' fallback
    if launcher is not None:
        argv, environ = launcher
        # accelerate's --cpu already derived a count (physical cores / processes): its choice, not a fallback
        chosen = "OMP_NUM_THREADS" in environ or any(
            arg.split("=")[0] in ("--num_cpu_threads_per_process", "--cpu") for arg in argv
        )
        if not chosen:
            processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
            threads = max(available_cores() // processes, 1)
            torch.set_num_threads(threads)
            os.environ["OMP_NUM_THREADS"] = str(threads)  # for the processes this one starts
    return torch.get_num_threads()
