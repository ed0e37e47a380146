"""Run records: which outputs each run used, so garbage collection knows what is still wanted.

Every pipeline run writes <workdir>/.tokenmill/runs/<started>-<id>.json when it starts and rewrites it as
each stage finishes (the fingerprint it used) and when it ends. While its status is `running` the record
is a lease: `tokenmill gc` never removes an output a live run holds, nor a staging folder younger than the
run. A run killed without a chance to say so is recognised by its process (same host) or its age.
"""

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field

from infra import storage
from infra.lease import pid_exists
from infra.stage import OutputNotWritable, write_failure

RUNS = ".tokenmill/runs"
log = logging.getLogger(__name__)
STALE_AFTER_S = 24 * 3600  # a `running` record from another host, silent this long, holds nothing


@dataclass
class RunRecord:
    run_id: str
    started: float
    host: str
    pid: int
    status: str = "running"  # running | completed | failed
    finished: float | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)  # stage -> fingerprint it used
    pinned: bool = False
    touched: float = 0.0  # last written: a lease from another host lapses when this grows old
    location: str = ""

    def save(self) -> None:
        self.touched = time.time()
        storage.write_text(self.location, json.dumps({k: v for k, v in asdict(self).items() if k != "location"}, indent=2))

    def holds(self, now: float | None = None) -> bool:
        """Whether this record is a live lease: its run is still going."""
        if self.status != "running":
            return False
        if self.host == socket.gethostname():
            return pid_exists(self.pid)
        return (now or time.time()) - (self.touched or self.started) < STALE_AFTER_S


def start_run(workdir: str) -> RunRecord:
    started = time.time()
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{uuid.uuid4().hex[:6]}"
    record = RunRecord(run_id, started, socket.gethostname(), os.getpid(),
                       location=storage.join(workdir, RUNS, f"{run_id}.json"))
    try:
        record.save()
    except OSError as err:  # the first write of a run: say where, as a stage's failed write does
        raise OutputNotWritable(f"cannot record the run under {storage.join(workdir, RUNS)}: "
                                f"{write_failure(err) or err}") from err
    return record


def used(record: RunRecord, stage: str, fingerprint: str) -> None:
    record.fingerprints[stage] = fingerprint
    _save_or_warn(record)


def finish_run(record: RunRecord, ok: bool) -> None:
    record.status, record.finished = ("completed" if ok else "failed"), time.time()
    _save_or_warn(record)


def _save_or_warn(record: RunRecord) -> None:
    """A record that cannot be updated (a disk that filled up) must not hide the error the run itself meets: the
    stage's own write names the path. gc then keeps what the last readable record names, and a `running` record
    stays a lease until its process is gone."""
    try:
        record.save()
    except OSError as err:
        log.warning("could not update the run record %s: %s", record.location, err)


def read_runs(workdir: str) -> list[RunRecord]:
    """Every run record of the workdir, oldest first."""
    records = []
    for location in storage.glob(storage.join(workdir, RUNS), "*.json"):
        records.append(RunRecord(**json.loads(storage.read_text(location)), location=location))
    return sorted(records, key=lambda r: r.started)


def pin(workdir: str, run_id: str, pinned: bool = True) -> RunRecord:
    matches = [r for r in read_runs(workdir) if r.run_id.startswith(run_id)]
    if len(matches) != 1:
        known = ", ".join(r.run_id for r in read_runs(workdir)[-5:]) or "none"
        raise ValueError(f"--pin {run_id}: {'no' if not matches else 'more than one'} recorded run matches "
                         f"(latest: {known})")
    matches[0].pinned = pinned
    matches[0].save()
    return matches[0]
