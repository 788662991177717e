"""Key layout and the text encodings of records.

Every key of one run is ``<prefix>:{<escaped run id>}:<kind>``. The braces delimit the run
id: the escaped id never contains a brace and the prefix may not contain one, so the first
``{`` of a key ends the prefix and the first ``}`` after it ends the run id: no two
(prefix, run id, kind) triples share a key. Written so, they are also a Redis hash tag: a
run's keys hash to one slot, which matters only to a server that shards by slot (the store
does not support Redis Cluster; see the package docstring). Step keys and signal names are hash fields or
length-prefixed values inside a run's own keys, never parts of a key name. A run's deliveries
live in one key whose name says ``sig`` (``:sigs``, a list in arrival order); their dedupe hash
is ``:delivered`` (the previous layout called it ``:sigids``, renamed when a store opens it).

Besides the run keys, each prefix has sorted sets of run ids, all scored by ``created_at`` but
``:live`` and ``:ids``, kept by the scripts that change a run (see ``_scripts``):
``<prefix>:runs`` (every run: listings), ``<prefix>:status:<status>`` (one per stored status),
``<prefix>:workflow:{<escaped name>}`` (one per workflow), ``<prefix>:ids`` (every run id at
score 0, in byte order: ``id_prefix`` listings, child runs), ``<prefix>:live`` (the runs whose
status is in ``DUE_STATUSES``, scored by the time each becomes due: polls), and
``<prefix>:expiring`` (finished runs whose keys count down, scored by when they expire, so their
index entries are removed after them). ``<prefix>:layout`` holds the layout's version (see
``RedisStore.open``), ``<prefix>:alive`` is a marker written when a store opens, whose
disappearance tells that the server lost its data, and ``<prefix>:signals`` is the notification
channel (not a key). They belong to the prefix, not to a run.

A prefix's own keys never equal another prefix's: a fixed name has no brace, a run key has
``}:<kind>`` after its first brace, a workflow's index ends at its first ``}``; so ``p:live``'s
keys (``p:live:{...}:run``, ``p:live:runs``, ``p:live:workflow:{...}``...) are none of ``p``'s.
``owns`` tells whether a key is one of a prefix's, for ``drop_all``.

Queues (``Capability.QUEUES``, ``_queue_scripts``): each queue's keys are
``<prefix>:queue:{<escaped name>}:<kind>``, so one queue's keys share one hash tag (one slot),
with kinds ``QUEUE_KINDS`` (none of them a run key's kind, so they are no run key of a prefix
ending in ``:queue``): ``:members`` (its runs that are not completed or cancelled, scored by
priority, members ``<order of enqueued_at>:<run id>``, so one priority's runs sort FIFO by byte
order), ``:running`` (its runs holding a lease, scored by the lease's expiry), ``:starts`` (first
claims, scored by when), ``:debounce`` (debounce key -> run id), ``:meta`` (the rate window's
horizon) and ``:delays`` (its runs enqueued with a ``not_before`` after their ``enqueued_at`` and
not claimed yet, scored by ``not_before``: an idle claimer sleeps until the earliest one).
``<prefix>:queues`` is the set of queue names. A queued run's entry is fields of its run hash
(``QUEUE_FIELDS``): deleted and expired with the run.

Events and streams (``Capability.STREAMS``, ``_output_scripts``): three more keys of each run, in
its hash slot (``OUTPUT_KINDS``, kept apart from ``RUN_KINDS`` so that the scripts' ``KEYS`` stay
as they are): ``:events`` (a hash, event key -> latest value), ``:streams`` (a hash of every
stream of the run, small: ``n<K>`` counts stream ``K``'s items, ``c<K>`` marks it closed) and
``:items`` (a hash of every stream's items and write ids: with ``K`` written ``<byte length of
K>:K``, ``i<K><offset>`` holds an item and ``w<K><write id>`` the offset of the append that
carried that id). Stream keys are fields, never parts of a key name, as step keys are. They
expire, persist and are deleted with the run's other keys.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from durable.errors import ConfigurationError
from durable.store import (
    QueuedRun,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
    compact_json,
)

RUN_KINDS = ("run", "steps", "sigs", "delivered")
"""The per-run keys, in the order every script receives them as ``KEYS``."""
OUTPUT_KINDS = ("events", "streams", "items")
"""The per-run keys of events and streams (``KeySpace.output_keys``); scripts that change a run
name them from its run key (``KEYS[1]``)."""
LEGACY_KINDS = ("sigids",)
"""Per-run keys of the previous layout (``:sigids`` is ``:delivered`` now)."""
STATUSES: tuple[RunStatus, ...] = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.WAITING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)
"""The stored statuses, each with an index, in the order scripts receive those indexes."""
LAYOUT = 4
"""The key layout's version, kept in ``<prefix>:layout``. 2: status, workflow and id indexes,
``:delivered``. 3: queues (a queued run is kept out of ``:live``, so a process of layout 2 would
hand queued runs to ``due_runs``: it is refused). 4: events and streams, and queues' ``:delays``
(a process of layout 3 would delete or expire a run and leave its events and streams behind, for
a new run of its id to inherit: it is refused). The previous release kept no version."""
UNMIGRATED = (2, 3)
"""Layouts a store marks as ``LAYOUT`` without migrating: layout 2 holds no queued run, and its
indexes are layout 3's for every other run; layouts 2 and 3 hold no events or streams (a run
delayed under layout 3 has no ``:delays`` entry: a claimer finds it at its next poll)."""
QUEUE_KINDS = ("members", "running", "starts", "debounce", "meta", "delays")
"""The per-queue keys, in the order ``QueueKeys.all`` lists them."""
QUEUE_FIELDS = (
    "queue",
    "q_priority",
    "q_partition",
    "q_not_before",
    "q_enqueued_at",
    "q_debounce",
    "q_started_at",
    "q_member",
)
"""The run hash's fields holding its queue entry (absent: no entry; an optional one absent: None)."""
_FIXED = (
    "runs",
    "live",
    "live:built",
    "alive",
    "ids",
    "layout",
    "expiring",
    "queues",
    *(f"status:{status.value}" for status in STATUSES),
)
"""Every fixed key name under a prefix, past and present (``live:built``: the previous release's
marker that its live index was built)."""

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
class QueueKeys:
    """One queue's keys, all under the hash tag ``{<prefix>:queue:<escaped name>}``'s braces."""

    members: str
    running: str
    starts: str
    debounce: str
    meta: str
    delays: str

    @property
    def all(self) -> list[str]:
        return [self.members, self.running, self.starts, self.debounce, self.meta, self.delays]


@dataclass(frozen=True)
class KeySpace:
    """Key names under one prefix."""

    prefix: str
    _tail: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """The prefix's keys every script that may change a run's status receives (see ``changing``)."""

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        statuses = [f"{self.prefix}:status:{status.value}" for status in STATUSES]
        object.__setattr__(self, "_tail", (self.live, *statuses, self.expiring))

    def run_keys(self, run_id: str) -> list[str]:
        """``[run, steps, sigs, delivered]`` of one run, all in one hash slot."""
        base = f"{self.prefix}:{{{escape_run_id(run_id)}}}:"
        run, steps, sigs, delivered = RUN_KINDS  # not a comprehension: every store call builds these
        return [base + run, base + steps, base + sigs, base + delivered]

    def output_keys(self, run_id: str) -> list[str]:
        """``[events, streams, items]`` of one run (``OUTPUT_KINDS``), in its hash slot."""
        base = f"{self.prefix}:{{{escape_run_id(run_id)}}}:"
        return [base + "events", base + "streams", base + "items"]

    def legacy_delivered(self, run_id: str) -> str:
        """The previous layout's name of a run's ``delivered`` hash."""
        return f"{self.prefix}:{{{escape_run_id(run_id)}}}:sigids"

    def changing(self, run_id: str) -> list[str]:
        """The ``KEYS`` of a script that may change the run's status: its keys, the index of live
        runs, the six status indexes (``STATUSES`` order) and the expiry schedule."""
        keys = self.run_keys(run_id)
        keys += self._tail
        return keys

    def status(self, status: RunStatus | str) -> str:
        """The index of the runs in ``status``."""
        return f"{self.prefix}:status:{RunStatus(status).value}"

    def workflow(self, name: str) -> str:
        """The index of the runs of workflow ``name`` (escaped as a run id is: brace-free)."""
        return f"{self.prefix}:workflow:{{{escape_run_id(name)}}}"

    def queue(self, name: str) -> QueueKeys:
        """The keys of queue ``name`` (escaped as a run id is: brace-free), in one hash slot."""
        base = f"{self.prefix}:queue:{{{escape_run_id(name)}}}:"
        return QueueKeys(*(base + kind for kind in QUEUE_KINDS))

    @property
    def queues(self) -> str:
        """The set of every queue name a run was enqueued on."""
        return f"{self.prefix}:queues"

    @property
    def ids(self) -> str:
        """Every run id at score 0: ``ZRANGE BYLEX`` finds the ids with a given prefix."""
        return f"{self.prefix}:ids"

    @property
    def expiring(self) -> str:
        """Finished runs whose keys have a TTL, scored by when they expire (see ``_scripts``)."""
        return f"{self.prefix}:expiring"

    @property
    def layout(self) -> str:
        """The key layout's version (``LAYOUT``), written once a store opened the prefix."""
        return f"{self.prefix}:layout"

    def fixed(self) -> list[str]:
        """Every fixed key under this prefix, past layouts' included (``drop_all``)."""
        return [f"{self.prefix}:{name}" for name in _FIXED]

    def run_id_of(self, key: str) -> tuple[str, str] | None:
        """``(run id, kind)`` of one of this prefix's run keys (past layouts' included), else ``None``."""
        head = self.prefix + ":{"
        if not key.startswith(head):
            return None
        end = key.find("}", len(head))
        if end < 0 or key[end + 1 : end + 2] != ":":
            return None
        kind = key[end + 2 :]
        if kind not in RUN_KINDS and kind not in OUTPUT_KINDS and kind not in LEGACY_KINDS:
            return None
        return unescape_run_id(key[len(head) : end]), kind

    def owns(self, key: str) -> bool:
        """Whether ``key`` is one of this prefix's keys (a run's, an index, a marker), and not a
        key of another prefix that starts alike (``app:v2``'s keys are not ``app``'s)."""
        if self.run_id_of(key) is not None or key in self.fixed():
            return True
        head = self.prefix + ":workflow:{"
        if key.startswith(head):
            return key.endswith("}") and key.find("}", len(head)) == len(key) - 1
        head = self.prefix + ":queue:{"
        end = key.find("}:", len(head))
        return (
            key.startswith(head)
            and end >= 0
            and "}" not in key[len(head) : end]
            and (key[end + 2 :] in QUEUE_KINDS)
        )

    @property
    def index(self) -> str:
        return f"{self.prefix}:runs"

    @property
    def live(self) -> str:
        """The index of live runs (status in ``DUE_STATUSES``), scored by when each becomes due."""
        return f"{self.prefix}:live"

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
        """A SCAN pattern matching every key of this prefix, and of the prefixes that start with
        it and a colon (``owns`` tells them apart)."""
        return self.prefix.translate(_GLOB_SPECIAL) + ":*"

    @property
    def run_pattern(self) -> str:
        """A SCAN pattern matching exactly this prefix's run keys (and nothing else of it)."""
        return self.prefix.translate(_GLOB_SPECIAL) + ":{*"


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
        "version": run.version,
        "context": run.context,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    return fields


def queue_order(enqueued_at: float) -> str:
    """``enqueued_at`` as 16 hex digits whose byte order is the numbers' order (the IEEE 754 bits,
    sign bit flipped for positives and every bit for negatives): a queue member's head."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", float(enqueued_at)))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def queue_fields(entry: QueuedRun) -> dict[str, str]:
    """The run hash's fields of a new queue entry (``started_at`` is the store's to set)."""
    fields = {
        "queue": entry.queue,
        "q_priority": str(int(entry.priority)),
        "q_not_before": fmt_float(entry.not_before),
        "q_enqueued_at": fmt_float(entry.enqueued_at),
        "q_member": f"{queue_order(entry.enqueued_at)}:{entry.run_id}",
    }
    if entry.partition_key is not None:
        fields["q_partition"] = entry.partition_key
    if entry.debounce_key is not None:
        fields["q_debounce"] = entry.debounce_key
    return fields


def queued_from(run_id: str, fields: dict[str, str]) -> QueuedRun | None:
    """The queue entry in a run hash's fields (``None``: the run has none)."""
    queue = fields.get("queue")
    if queue is None:
        return None
    started = fields.get("q_started_at")
    return QueuedRun(
        run_id=run_id,
        queue=queue,
        priority=int(fields.get("q_priority", "0")),
        partition_key=fields.get("q_partition"),
        not_before=float(fields.get("q_not_before", "0")),
        enqueued_at=float(fields.get("q_enqueued_at", "0")),
        debounce_key=fields.get("q_debounce"),
        started_at=None if started is None else float(started),
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
    if step.version is not None:  # absent: the value a step without a version always had
        body.append(step.version)
    return _STATUS_MARK[step.status] + compact_json(body)


def decode_step(run_id: str, key: str, value: str) -> StepRecord:
    task, args_digest, result, error, attempts, started_at, finished_at, *version = json.loads(value[1:])
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
        version=version[0] if version else None,
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


@dataclass(frozen=True)
class OutputNotice:
    """A pub/sub message saying that the events or streams of ``run_id`` may have changed (a write,
    a final status, a deletion): ``{"o": run_id, "f": origin}``, ``origin`` naming the store object
    that wrote and woke its own readers already (``""``: none, a script's notice)."""

    run_id: str
    origin: str = ""


def output_notice(run_id: str, origin: str) -> str:
    """The pub/sub message of an ``OutputNotice`` (scripts write ``{"o": run_id}`` with ``cjson``)."""
    return json.dumps({"o": run_id, "f": origin}, ensure_ascii=False)


def parse_notice(message: str) -> tuple[str, str] | str | OutputNotice:
    """A delivery's ``(run_id, name)``, the name of a queue whose runs may be claimable (the
    queue scripts publish ``[queue]``: a one-element list), or an ``OutputNotice``."""
    data = json.loads(message)
    if isinstance(data, dict):
        return OutputNotice(str(data["o"]), str(data.get("f", "")))
    if isinstance(data, list) and len(data) == 1:
        return str(data[0])
    run_id, name = data
    return str(run_id), str(name)
