"""durable.testing: tests of workflows that neither wait nor need a second process.

``virtual_time()`` runs durable's workflow time on a ``VirtualClock`` that jumps ahead when every
run waits (a week's sleep or a retry's backoff take no time); ``crash_after(task)`` and
``crash_before(task)`` stop a run at a step's checkpoint as if its process died there. The pytest
plugin (``durable.testing.plugin``, loaded by the ``pytest11`` entry point) adds the fixtures
``durable_wf``, ``durable_store_url`` and ``durable_clock`` and the option ``--durable-store``.
"""

from __future__ import annotations

from durable.testing._crash import CrashPoint, SimulatedCrash, crash_after, crash_before
from durable.testing._virtual import VirtualClock, virtual_time

__all__ = ["CrashPoint", "SimulatedCrash", "VirtualClock", "crash_after", "crash_before", "virtual_time"]
