"""Reading many runs of the Postgres store: ``list_runs`` (one query whose filters each read an
index, ``_sql.list_runs``) and ``due_runs`` (one query on ``runs_live``).
"""

from __future__ import annotations

from collections.abc import Collection

from durable.store import RunQuery, RunRecord
from durable_postgres import _sql
from durable_postgres._calls import PostgresCalls


class PostgresListing(PostgresCalls):
    """The listing part of ``PostgresStore``."""

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """``query``'s runs, each filter read from an index (``_sql.list_runs``)."""
        statement = _sql.list_runs(self._quoted, query)
        if statement is None:
            return []
        sql, params = statement
        rows = await self._call("list runs", lambda conn: conn.fetch(sql, *params))
        return [self._run(row) for row in rows]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), of ``workflows`` if given, oldest
        first: one query on ``runs_live`` (the runs that may become due, kept by triggers), whose
        cost does not grow with the finished runs the schema holds.

        One clock: ``now`` is read on this store's ``clock`` and judged on the server's, that
        many seconds from the server's ``now()`` (a worker passes ``time.time()``: the server's
        now), so a worker whose clock is off resumes a run exactly when the server says its
        lease expired. Rows that cannot be read are left out where the query can tell.
        """
        offset = float(now) - self.clock()
        if workflows is None:
            rows = await self._call("list due runs", lambda conn: conn.fetch(self._sql["due"], offset, limit))
        elif not workflows:
            return []
        else:
            names = sorted(workflows)
            rows = await self._call(
                "list due runs", lambda conn: conn.fetch(self._sql["due_of"], offset, limit, names)
            )
        return [self._run(row) for row in rows]
