"""Build and run the `deepspeed` launcher command, streaming every rank's output line by line."""

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from infra.lease import FOLDER_ENV as LEASE_FOLDER_ENV


def gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def has_gpu() -> bool:
    """Whether training here would run on GPUs, without importing torch when it is not loaded yet (seconds a dry
    run cannot spend): `nvidia-smi -L` lists the devices the driver sees."""
    if "torch" in sys.modules:
        return gpu_count() > 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "GPU" in listed and visible not in ("", "-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# DeepSpeed's own hostfile grammar (deepspeed.launcher.runner._parse_hostfile): `<host> slots=<n>`, `#` comments
HOSTFILE_LINE = re.compile(r"^(\S+)\s+slots=(\d+)")


def read_hostfile(path: Path) -> dict[str, int]:
    """Slots per host, or ValueError naming the problem: the launcher itself quietly trains on this machine alone
    when its hostfile is missing, so a typo in the path must stop the run here."""
    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    slots: dict[str, int] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = HOSTFILE_LINE.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: expected `<host> slots=<n>`, got {line!r}")
        if match.group(1) in slots:
            raise ValueError(f"{path}:{number}: host {match.group(1)} is listed twice")
        slots[match.group(1)] = int(match.group(2))
    if not slots:
        raise ValueError(f"{path}: lists no host (one `<host> slots=<n>` line per node)")
    return slots


def deepspeed_command(script: Path, script_args: list[str], num_procs: int, hostfile: Path | None = None) -> list[str]:
    """`deepspeed` from the same environment; --num_gpus is also how many CPU ranks run without GPUs.

    With a hostfile the launcher places ranks by its slots (num_procs is not used); the path is made absolute
    because the launcher runs in the stage's output folder.
    """
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner"]
    placement = ["--hostfile", str(Path(hostfile).resolve())] if hostfile else ["--num_gpus", str(num_procs)]
    return launcher + placement + ["--master_port", str(free_port()), str(script), *script_args]


def launch_env(num_procs: int, use_gpu: bool, lease_folder: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if not use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
        # share the cores among the ranks instead of each rank grabbing all of them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_procs))
        env["LOCAL_SIZE"] = str(num_procs)
    env["PYTHONUNBUFFERED"] = "1"
    # the ranks run in their own session; they watch this pid and stop if it is killed
    env["TOKENMILL_OWNER_PID"] = str(os.getpid())
    if lease_folder is not None:  # the ranks add themselves to the lease this process holds on the folder
        env[LEASE_FOLDER_ENV] = str(lease_folder)
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
