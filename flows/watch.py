"""Reprocess on arrival: `tokenmill serve --watch` polls the corpus and starts the data deployment by an event.

Every `poll` seconds the watcher lists the recipe's `ingest.paths` (a local folder or a bucket prefix) with
each file's identity — size and mtime, or ETag and version — without reading any file. A file counts once
its identity is the same over two polls (a copy still being written does not), and it is new when that
identity is not the one last handed to a run. New files become one Prefect event,
`tokenmill.corpus.changed`, whose payload lists them; the data deployment's trigger starts a run for it,
with the files as its `changed_files` parameter, so the UI shows what started it. One triggered run at a
time: while one is scheduled or running, new files wait for the next poll. Content addressing does the
rest: only the units the new files fall into are read.
"""

import json
import logging
import threading

from infra import storage

EVENT = "tokenmill.corpus.changed"
log = logging.getLogger(__name__)


def resource_id(recipe_name: str) -> str:
    return f"tokenmill.corpus.{recipe_name}"


class Watcher:
    """Which files are new and settled, poll after poll; what was handed to a run is remembered in `state`."""

    def __init__(self, paths: list[str], state: str):
        self.paths, self.state = paths, state
        self.previous: dict[str, str] | None = None
        self.handed = json.loads(storage.read_text(state)) if storage.exists(state) else None

    def listing(self) -> dict[str, str]:
        from tasks.data.ingest import file_identity, list_input_files

        found = {}
        for file in list_input_files(self.paths):
            try:
                identity, _ = file_identity(file)
            except OSError:  # gone between the listing and the stat: next poll
                continue
            found[file.rel] = json.dumps(identity)
        return found

    def poll(self) -> list[str]:
        """The settled files that are new or changed since they were last handed to a run."""
        now = self.listing()
        settled = {name: ident for name, ident in now.items() if self.previous and self.previous.get(name) == ident}
        self.previous = now
        if self.handed is None:  # first start: what is there now is the baseline, not news
            self.remember(now)
            return []
        return sorted(name for name, ident in settled.items() if self.handed.get(name) != ident)

    def remember(self, files: dict[str, str]) -> None:
        self.handed = (self.handed or {}) | files
        storage.write_text(self.state, json.dumps(self.handed, indent=1, sort_keys=True))

    def hand_over(self, names: list[str]) -> None:
        self.remember({name: self.previous[name] for name in names})


def run_in_flight(deployment: str) -> bool:
    """Whether a run of the deployment (`pipeline/<name>`) is scheduled, pending or running."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    active = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                                     flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                                         type=FlowRunFilterStateType(any_=active))),
                                     sort=FlowRunSort.START_TIME_DESC, limit=1)
    return bool(runs)


def announce(recipe_name: str, files: list[str]) -> None:
    from prefect.events import emit_event

    emit_event(event=EVENT, resource={"prefect.resource.id": resource_id(recipe_name),
                                      "prefect.resource.name": f"corpus of {recipe_name}"},
               payload={"files": files})


def watch_forever(watcher: Watcher, recipe_name: str, deployment: str, poll_s: float, stop: threading.Event) -> None:
    log.info("watching %s every %.0f s: new or changed files start %s", watcher.paths, poll_s, deployment)
    while not stop.wait(poll_s):
        try:
            fresh = watcher.poll()
            if fresh and not run_in_flight(deployment):
                announce(recipe_name, fresh)
                watcher.hand_over(fresh)
                log.info("%d new or changed file(s) announced: %s", len(fresh), ", ".join(fresh[:10]))
        except Exception:  # noqa: BLE001 - a failed poll (a store hiccup) must not end serving; the next one retries
            log.exception("watching the corpus failed this poll")
