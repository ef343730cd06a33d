"""A result the gateway answers itself (SHOW SESSION, DESCRIBE INPUT/OUTPUT), behind the backend interface."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.relations import Column, Execution, ExecutionStats, Row


class StaticExecution(Execution):
    def __init__(self, *, columns: tuple[Column, ...], rows: Sequence[Row]) -> None:
        self.columns = columns
        self._rows = list(rows)
        self.stats = ExecutionStats()

    async def start(self) -> None:
        return None

    async def fetch(self, max_rows: int) -> Sequence[Row] | None:
        return self.take(max_rows)

    def take(self, max_rows: int) -> Sequence[Row] | None:
        """`fetch` without the coroutine: the rows are in memory, nothing is ever waited for."""
        if not self._rows:
            return None
        if len(self._rows) <= max_rows:
            batch, self._rows = self._rows, []
        else:
            batch, self._rows = self._rows[:max_rows], self._rows[max_rows:]
        self.stats.rows += len(batch)
        return batch

    async def cancel(self) -> None:
        self._rows = []
