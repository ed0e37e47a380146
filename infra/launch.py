"""Build and run the `deepspeed` launcher command, streaming every rank's output line by line."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def deepspeed_command(script: Path, script_args: list[str], num_procs: int, hostfile: Path | None = None) -> list[str]:
    """`deepspeed` from the same environment; --num_gpus is also how many CPU ranks run without GPUs."""
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner"]
    placement = ["--hostfile", str(hostfile)] if hostfile else ["--num_gpus", str(num_procs)]
    return launcher + placement + ["--master_port", str(free_port()), str(script), *script_args]


def launch_env(num_procs: int, use_gpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    if not use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
        # share the cores among the ranks instead of each rank grabbing all of them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_procs))
        env["LOCAL_SIZE"] = str(num_procs)
    env["PYTHONUNBUFFERED"] = "1"
    # the ranks run in their own session; they watch this pid and stop if it is killed
    env["TOKENMILL_OWNER_PID"] = str(os.getpid())
    return env


class LaunchFailed(RuntimeError):
    pass


def run_streaming(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None], cwd: Path | None = None) -> None:
    """Run the launcher, handing each output line to on_line; raise with the last lines if it fails."""
    tail: list[str] = []
    with subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1, start_new_session=True) as proc:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-40:]
            on_line(line)
        code = proc.wait()
    if code != 0:
        raise LaunchFailed(f"training exited with code {code}; last output:\n" + "\n".join(tail))
