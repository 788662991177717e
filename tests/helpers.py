"""Plain helpers shared by the core tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations


class Calls:
    """Counts executions of task bodies by name."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self, name: str) -> None:
        self.log.append(name)

    def count(self, name: str) -> int:
        return self.log.count(name)


class Crash(Exception):
    """Stands for a process dying in the middle of a run."""
