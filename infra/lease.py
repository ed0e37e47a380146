"""The lease on a resumable training folder: who writes into it, so a re-run never overlaps a killed run's ranks.

`<folder>/lease.json` names its holders (role, host, PID, the process's start time) and when the lease was taken. The
driver takes it before it writes anything there and gives it up when its launch ends; the ranks add themselves
once they are up, and rank 0 renews it (the file's mtime) every step. After `kill -9` of the driver its ranks may
run on until they notice, between steps: a new launch waits, a bounded time, until every holder is gone, and
otherwise stops with a message that names them. A holder on this host is alive while its PID runs the same process
(same start time: a reused PID does not count); one on another host while the lease is renewed.
"""

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.files import atomic_write_text

LEASE = "lease.json"
FOLDER_ENV = "TOKENMILL_LEASE_FOLDER"  # tells the ranks which folder's lease to join
REMOTE_SILENT_S = 60.0  # a holder on another host is taken for gone once the lease has not been renewed this long
log = logging.getLogger(__name__)


class LeaseHeld(RuntimeError):
    pass


@dataclass(frozen=True)
class Holder:
    role: str  # "driver", "rank 0", ...
    host: str
    pid: int
    started: int | None  # the process's start time (clock ticks after boot, /proc/<pid>/stat), None where unknown

    @classmethod
    def this_process(cls, role: str) -> "Holder":
        return cls(role, socket.gethostname(), os.getpid(), process_start(os.getpid()))

    def alive(self, lease_age_s: float) -> bool:
        if self.host != socket.gethostname():
            return lease_age_s < REMOTE_SILENT_S
        if self.started is None:
            return pid_exists(self.pid)
        return process_start(self.pid) == self.started

    def __str__(self) -> str:
        return f"{self.role} (pid {self.pid} on {self.host})"


def process_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the parenthesised command name (which may hold spaces); starttime is field 22 of the whole line
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_holders(folder: Path) -> tuple[list[Holder], float]:
    """(holders, seconds since the lease was last written or renewed); no holders when there is no lease."""
    path = folder / LEASE
    try:
        lease, age = json.loads(path.read_text()), time.time() - path.stat().st_mtime
    except (OSError, ValueError):  # none, or removed while we read it
        return [], 0.0
    return [Holder(**h) for h in lease["holders"]], age


def live_holders(folder: Path) -> list[Holder]:
    holders, age = read_holders(folder)
    return [h for h in holders if h.pid != os.getpid() and h.alive(age)]


def wait_until_free(folder: Path, timeout_s: float) -> None:
    """Return once no live process holds the folder's lease; LeaseHeld naming the holders after `timeout_s`."""
    deadline, waiting = time.monotonic() + timeout_s, False
    while live := live_holders(folder):
        if time.monotonic() >= deadline:
            raise LeaseHeld(f"{folder} is still in use by {', '.join(map(str, live))} after waiting {timeout_s:.0f} s: "
                            f"a previous run of this stage has not stopped. Stop those processes (kill "
                            f"{' '.join(str(h.pid) for h in live)}) and run again")
        if not waiting:
            log.warning("waiting up to %.0f s for %s to exit: they still hold %s", timeout_s,
                        ", ".join(map(str, live)), folder / LEASE)
            waiting = True
        time.sleep(0.2)
    if waiting:
        log.warning("the previous holders of %s have exited; continuing", folder / LEASE)


def write_lease(folder: Path, holders: list[Holder]) -> None:
    atomic_write_text(folder / LEASE, json.dumps({"taken": time.time(), "holders": [asdict(h) for h in holders]}))


def add_holders(folder: Path, holders: list[Holder]) -> None:
    """The ranks join the driver that took the lease (rank 0 writes for all of them)."""
    current, _ = read_holders(folder)
    write_lease(folder, current + [h for h in holders if h not in current])


def renew(folder: Path) -> None:
    try:
        os.utime(folder / LEASE)
    except OSError:  # the driver gave the lease up, or it was never taken (a launch by hand)
        pass


@contextmanager
def holding(folder: Path, timeout_s: float) -> Iterator[None]:
    """Wait for the folder to be free, hold its lease as this process's driver, and give it up at the end."""
    wait_until_free(folder, timeout_s)
    folder.mkdir(parents=True, exist_ok=True)
    write_lease(folder, [Holder.this_process("driver")])
    try:
        yield
    finally:
        holders, _ = read_holders(folder)
        if any(h.role == "driver" and h.pid == os.getpid() for h in holders):
            (folder / LEASE).unlink(missing_ok=True)
