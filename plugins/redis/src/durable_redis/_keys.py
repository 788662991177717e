"""Key layout and the text encodings of records.

Every key of one run is ``<prefix>:{<escaped run id>}:<kind>``. The braces delimit the run
id: the escaped id never contains a brace and the prefix may not contain one, so the first
``{`` of a key ends the prefix and the first ``}`` after it ends the run id: no two
(prefix, run id, kind) triples share a key. Written so, they are also a Redis hash tag: a
run's keys hash to one slot, which matters only to a server that shards by slot (the store
does not support Redis Cluster; see the package docstring). Step keys and signal names are hash fields or
length-prefixed values inside a run's own keys, never parts of a key name.

Besides the run keys, each prefix has ``<prefix>:runs`` (every run, scored by ``created_at``:
listings), ``<prefix>:live`` (the runs whose status is in ``DUE_STATUSES``, scored by the time
each becomes due: polls, see ``_scripts``), ``<prefix>:live:built`` (set once ``:live`` holds
every run, see ``RedisStore.open``), ``<prefix>:alive`` (a marker written when a store opens, whose
disappearance tells that the server lost its data) and the notification channel
``<prefix>:signals``. They carry no hash tag: they belong to the prefix, not to a run. A prefix's
own keys never equal another prefix's: those of prefix ``p:live`` are ``p:live:{...}:run``,
``p:live:runs``, ``p:live:live``...
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from durable.errors import ConfigurationError
from durable.store import RunRecord, RunStatus, SignalRecord, StepRecord, StepStatus, compact_json

RUN_KINDS = ("run", "steps", "sigs", "sigids")
"""The per-run keys, in the order every script receives them as ``KEYS``."""

_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def check_prefix(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"RedisStore prefix {prefix!r} must be non-empty and contain no '{{' or '}}' "
            "(braces delimit the run id in every key name)"
        )
    return prefix


def escape_run_id(run_id: str) -> str:
    """The run id as written between a key's braces: reversible and brace-free.

    ``%`` is escaped first so that the three escapes cannot be confused with literal text.
    An empty id becomes a lone ``%``, which no escaped non-empty id can be, so that the braces
    are never empty (an empty hash tag would hash the whole key, and a run's keys would no
    longer share one slot).
    """
    if not run_id:
        return "%"
    if "%" not in run_id and "{" not in run_id and "}" not in run_id:  # most ids: nothing to escape
        return run_id
    return run_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def unescape_run_id(text: str) -> str:
    if text == "%":
        return ""
    return text.replace("%7B", "{").replace("%7D", "}").replace("%25", "%")


@dataclass(frozen=True)
class KeySpace:
    """Key names under one prefix."""

    prefix: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def run_keys(self, run_id: str) -> list[str]:
        """``[run, steps, sigs, sigids]`` of one run, all in one hash slot."""
        base = f"{self.prefix}:{{{escape_run_id(run_id)}}}:"
        run, steps, sigs, sigids = RUN_KINDS  # not a comprehension: every store call builds these
        return [base + run, base + steps, base + sigs, base + sigids]

    @property
    def index(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def live(self) -> str:
        """The index of live runs (status in ``DUE_STATUSES``), scored by when each becomes due."""
        return f"{self.prefix}:live"

    @property
    def live_built(self) -> str:
        """Exists once ``live`` lists every run (stores of the previous release kept no such index)."""
        return f"{self.prefix}:live:built"

    @property
    def alive(self) -> str:
        """The marker a store writes when it opens (if absent) and reads back: gone or replaced,
        it tells that the server lost its data since (see ``RedisStore``)."""
        return f"{self.prefix}:alive"

    @property
    def channel(self) -> str:
        return f"{self.prefix}:signals"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix (for cleaning up test data)."""
        return self.prefix.translate(_GLOB_SPECIAL) + ":*"


# -- field encodings -------------------------------------------------------------------------
# Floats are written with repr() and read with float(): the exact double comes back.


def fmt_float(value: float) -> str:
    return repr(float(value))


def run_fields(run: RunRecord) -> dict[str, str]:
    """The run hash's fields; a ``None`` field is absent."""
    fields = {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status.value,
        "inputs": run.inputs,
        "inputs_digest": run.inputs_digest,
        "created_at": fmt_float(run.created_at),
        "updated_at": fmt_float(run.updated_at),
        "lease_token": str(run.lease_token),
        "cancel_requested": "1" if run.cancel_requested else "0",
    }
    optional = {
        "result": run.result,
        "error": run.error,
        "owner": run.owner,
        "parent_run_id": run.parent_run_id,
        "lease_expires_at": None if run.lease_expires_at is None else fmt_float(run.lease_expires_at),
        "wake_at": None if run.wake_at is None else fmt_float(run.wake_at),
        "deadline": None if run.deadline is None else fmt_float(run.deadline),
        "activity": run.activity,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    return fields


def _opt_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def parse_run(fields: dict[str, str]) -> RunRecord:
    return RunRecord(
        run_id=fields["run_id"],
        workflow=fields["workflow"],
        status=RunStatus(fields["status"]),
        inputs=fields["inputs"],
        inputs_digest=fields["inputs_digest"],
        created_at=float(fields["created_at"]),
        updated_at=float(fields["updated_at"]),
        result=fields.get("result"),
        error=fields.get("error"),
        owner=fields.get("owner"),
        lease_token=int(fields["lease_token"]),
        lease_expires_at=_opt_float(fields.get("lease_expires_at")),
        wake_at=_opt_float(fields.get("wake_at")),
        deadline=_opt_float(fields.get("deadline")),
        parent_run_id=fields.get("parent_run_id"),
        cancel_requested=fields.get("cancel_requested") == "1",
        activity=fields.get("activity"),  # absent in records of the previous release: None
    )


def pairs(flat: list[str]) -> dict[str, str]:
    """A RESP2 ``HGETALL`` reply (field, value, field, value, ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


_STATUS_MARK = {StepStatus.COMPLETED: "c", StepStatus.FAILED: "f"}
_MARK_STATUS = {mark: status for status, mark in _STATUS_MARK.items()}


def encode_step(step: StepRecord) -> str:
    """A step's hash value. The first character is its status, so the checkpoint script decides
    "first completed writer wins" without decoding JSON in Lua."""
    body = [
        step.task,
        step.args_digest,
        step.result,
        step.error,
        step.attempts,
        step.started_at,
        step.finished_at,
    ]
    return _STATUS_MARK[step.status] + compact_json(body)


def decode_step(run_id: str, key: str, value: str) -> StepRecord:
    task, args_digest, result, error, attempts, started_at, finished_at = json.loads(value[1:])
    return StepRecord(
        run_id=run_id,
        key=key,
        task=task,
        args_digest=args_digest,
        status=_MARK_STATUS[value[0]],
        result=result,
        error=error,
        attempts=int(attempts),
        started_at=float(started_at),
        finished_at=float(finished_at),
    )


def delivery_field(name: str, delivery_id: str) -> str:
    """The dedupe field of ``(name, delivery_id)`` in a run's ``sigids`` hash.

    Length-prefixed, so ``("a", "b:c")`` and ``("a:b", "c")`` differ. It starts with a digit,
    so it never equals the hash's ``seq`` counter field.
    """
    return f"{len(name)}:{name}{delivery_id}"


def encode_signal_body(name: str, delivery_id: str, payload: str, sent_at: float) -> str:
    return json.dumps([name, delivery_id, payload, sent_at], ensure_ascii=False)


def decode_signal(run_id: str, entry: str) -> SignalRecord:
    """A ``sigs`` list entry: ``<seq> <json body>`` (the script prepends the seq it assigned)."""
    seq, body = entry.split(" ", 1)
    name, delivery_id, payload, sent_at = json.loads(body)
    return SignalRecord(run_id, name, delivery_id, payload, int(seq), float(sent_at))


def notice(run_id: str, name: str) -> str:
    """The pub/sub message announcing a delivery to ``run_id``'s signal ``name``."""
    return json.dumps([run_id, name], ensure_ascii=False)


def parse_notice(message: str) -> tuple[str, str]:
    run_id, name = json.loads(message)
    return str(run_id), str(name)
