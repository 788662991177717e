"""``JsonFileStore``: the whole store in one JSON file, read and rewritten under a file lock.

Every operation is one transaction: take an exclusive ``flock`` on a lock file, read the
document, change it, write it to a temporary file and ``os.replace`` it over the original.
That makes each method atomic across coroutines, threads and processes, and a crash leaves
either the old or the new document, never half of one. It is slow for big stores (every
write rewrites the file) and meant as a readable example of what the contract asks.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from durable._lifecycle import CLAIMABLE, DUE_STATUSES, is_due
from durable.errors import LeaseLost, StoreCorrupted, StoreNotFound
from durable.store import (
    Capability,
    Lease,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
    Store,
)

T = TypeVar("T")
Doc = dict[str, Any]
FORMAT = "durable-example-store/1"


def _empty() -> Doc:
    return {"format": FORMAT, "seq": 0, "runs": {}, "steps": {}, "signals": {}}


def _run_from(data: dict[str, Any]) -> RunRecord:
    return RunRecord(**{**data, "status": RunStatus(data["status"])})


def _run_to(run: RunRecord) -> dict[str, Any]:
    return {**asdict(run), "status": run.status.value}


def _step_from(data: dict[str, Any]) -> StepRecord:
    return StepRecord(**{**data, "status": StepStatus(data["status"])})


def _step_to(step: StepRecord) -> dict[str, Any]:
    return {**asdict(step), "status": step.status.value}


class JsonFileStore(Store):
    """A store in one JSON file (``jsonfile:///store.json``)."""

    name = "jsonfile"
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})
    loop_bound = False  # no connections: any event loop may use it
    poll_interval = 0.05

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._directory = os.path.dirname(os.path.abspath(self.path))
        self._lock_path = self.path + ".lock"
        self._local: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str) -> JsonFileStore:
        """``jsonfile:///relative.json`` or ``jsonfile:////absolute.json``, like SQLite URLs."""
        parts = urlsplit(url)
        if parts.netloc:  # jsonfile://relative.json, a common slip
            return cls(unquote(parts.netloc + parts.path))
        return cls(unquote(parts.path[1:] if parts.path.startswith("/") else parts.path))

    def __getstate__(self) -> dict[str, Any]:
        # Sent to other processes unopened: only the path travels.
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    # -- the transaction ----------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        if not create and not await asyncio.to_thread(os.path.exists, self.path):
            # Checked before anything touches the disk: the lock file is created on first use.
            raise StoreNotFound(f"store file {self.path!r} does not exist")
        if create:
            await asyncio.to_thread(os.makedirs, self._directory, exist_ok=True)
        await self._transact(lambda doc: None, write=create)  # creates the file, or checks one

    async def close(self) -> None:
        pass

    async def _transact(self, change: Callable[[Doc], T], *, write: bool = True) -> T:
        # One thread at a time per store object keeps threads off each other's locks;
        # flock does the same between store objects and processes.
        if self._local is None:
            self._local = asyncio.Lock()
        async with self._local:
            return await asyncio.to_thread(self._transact_sync, change, write)

    def _transact_sync(self, change: Callable[[Doc], T], write: bool) -> T:
        with self._flock():
            doc = self._read()
            result = change(doc)
            if write:
                self._write(doc)
            return result

    @contextmanager
    def _flock(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read(self) -> Doc:
        try:
            with open(self.path, encoding="utf-8") as file:
                doc = json.load(file)
        except FileNotFoundError:
            return _empty()
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreCorrupted(f"{self.path}: not a durable JSON store ({exc})") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise StoreCorrupted(f"{self.path}: not a {FORMAT} file")
        return doc

    def _write(self, doc: Doc) -> None:
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".store-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(doc, file, ensure_ascii=False)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise

    @staticmethod
    def _fenced(doc: Doc, lease: Lease) -> dict[str, Any]:
        run = doc["runs"].get(lease.run_id)
        if run is None or run["lease_token"] != lease.token:
            raise LeaseLost.stale(lease.run_id, lease.token, None if run is None else run["lease_token"])
        return run  # type: ignore[no-any-return]

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        def change(doc: Doc) -> tuple[RunRecord, bool]:
            existing = doc["runs"].get(run.run_id)
            if existing is not None:
                return _run_from(existing), False
            doc["runs"][run.run_id] = _run_to(run)
            return run, True

        return await self._transact(change)

    async def get_run(self, run_id: str) -> RunRecord | None:
        found = await self._transact(lambda doc: doc["runs"].get(run_id), write=False)
        return None if found is None else _run_from(found)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        def change(doc: Doc) -> Lease | None:
            data = doc["runs"].get(run_id)
            now = time.time()
            if data is None:
                return None
            run = _run_from(data)
            if run.status not in CLAIMABLE or run.lease_is_live(now):  # a lease expiring now is not live
                return None
            lease = Lease(run_id, owner, run.lease_token + 1, now + lease_seconds)
            data.update(
                status=RunStatus.RUNNING.value,
                owner=owner,
                lease_token=lease.token,
                lease_expires_at=lease.expires_at,
                wake_at=None,
                activity=None,
                updated_at=now,
            )
            return lease

        return await self._transact(change)

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        def change(doc: Doc) -> RunRecord:
            data = self._fenced(doc, lease)
            data.update(owner=lease.owner, lease_expires_at=time.time() + lease_seconds)
            if activity is not None:
                data["activity"] = activity
            return _run_from(data)

        return await self._transact(change)

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        def change(doc: Doc) -> None:
            data = self._fenced(doc, lease)
            data.update(
                status=status.value,
                result=result,
                error=error,
                wake_at=wake_at,
                activity=activity,
                updated_at=time.time(),
            )
            if release:
                data.update(owner=None, lease_expires_at=None)

        await self._transact(change)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        def change(doc: Doc) -> RunRecord | None:
            data = doc["runs"].get(run_id)
            if data is None:
                return None
            now = time.time()
            run = _run_from(data)
            data.update(cancel_requested=True, updated_at=now)
            if not run.status.is_final and not run.lease_is_live(now):
                data["status"] = RunStatus.CANCELLED.value
            return _run_from(data)

        return await self._transact(change)

    async def reset_run(self, run_id: str) -> RunRecord | None:
        def change(doc: Doc) -> RunRecord | None:
            data = doc["runs"].get(run_id)
            if data is None:
                return None
            if data["status"] not in (RunStatus.FAILED.value, RunStatus.CANCELLED.value):
                return _run_from(data)  # only failed and cancelled runs are reset
            data.update(
                status=RunStatus.PENDING.value,
                cancel_requested=False,
                error=None,
                wake_at=None,
                activity=None,
                updated_at=time.time(),
            )
            return _run_from(data)

        return await self._transact(change)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        runs = await self._transact(lambda doc: [_run_from(d) for d in doc["runs"].values()], write=False)
        found = sorted(
            (run for run in runs if query.matches(run)), key=lambda run: (-run.created_at, run.run_id)
        )
        return found[query.offset : query.offset + query.limit]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """``is_due``'s runs (of ``workflows`` if given), oldest first. A real store reads them from
        an index over the ``DUE_STATUSES`` (see durable-sqlite's ``runs_due``); this one reads its
        whole file anyway."""

        def due(doc: Doc) -> list[RunRecord]:
            live = (
                _run_from(d)
                for d in doc["runs"].values()
                if d["status"] in DUE_STATUSES and (workflows is None or d["workflow"] in workflows)
            )
            return [run for run in live if is_due(run, now)]

        found = await self._transact(due, write=False)
        found.sort(key=lambda run: (run.created_at, run.run_id))
        return found[:limit]

    async def delete_run(self, run_id: str) -> bool:
        def change(doc: Doc) -> bool:
            doc["steps"].pop(run_id, None)
            doc["signals"].pop(run_id, None)
            return doc["runs"].pop(run_id, None) is not None

        return await self._transact(change)

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        steps = await self._transact(lambda doc: list(doc["steps"].get(run_id, {}).values()), write=False)
        return sorted((_step_from(s) for s in steps), key=lambda step: step.finished_at)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        return (await self.save_steps(lease, [step]))[0]

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        batch = list(steps)

        def change(doc: Doc) -> list[StepRecord]:
            self._fenced(doc, lease)
            journal = doc["steps"].setdefault(lease.run_id, {})
            stored = []
            for step in batch:
                existing = journal.get(step.key)
                if existing is not None and existing["status"] == StepStatus.COMPLETED.value:
                    stored.append(_step_from(existing))
                else:
                    journal[step.key] = _step_to(step)
                    stored.append(step)
            return stored

        return await self._transact(change)

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        def change(doc: Doc) -> bool:
            deliveries = doc["signals"].setdefault(run_id, [])
            if any(d["name"] == name and d["delivery_id"] == delivery_id for d in deliveries):
                return False
            doc["seq"] += 1
            now = time.time()
            deliveries.append(asdict(SignalRecord(run_id, name, delivery_id, payload, doc["seq"], now)))
            run = doc["runs"].get(run_id)
            if run is not None and run["status"] == RunStatus.WAITING.value:
                run.update(wake_at=now, updated_at=now)
            return True

        return await self._transact(change)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        deliveries = await self._transact(lambda doc: list(doc["signals"].get(run_id, [])), write=False)
        return [SignalRecord(**d) for d in deliveries if name is None or d["name"] == name]
