"""Records built by stores from database rows."""

from __future__ import annotations

import dataclasses

import pytest

from durable.store import StepRecord, StepStatus

ROW = ("run-1", "fetch#2", "fetch", "d" * 32, "completed", "[1]", None, 2, 10.0, 11.5)


def test_from_row_equals_the_constructed_record() -> None:
    record = StepRecord.from_row(ROW)
    built = StepRecord(
        "run-1", "fetch#2", "fetch", "d" * 32, StepStatus.COMPLETED, "[1]", None, 2, 10.0, 11.5
    )
    assert record == built and hash(record) == hash(built)
    assert record.status is StepStatus.COMPLETED
    assert dataclasses.replace(record, key="x").key == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.key = "other"  # type: ignore[misc]


def test_from_row_refuses_a_row_of_another_shape() -> None:
    with pytest.raises(ValueError, match="10 or 11 columns, got 9"):
        StepRecord.from_row(ROW[:9])
    with pytest.raises(ValueError, match="10 or 11 columns, got 12"):
        StepRecord.from_row((*ROW, "1.0", "extra"))
    with pytest.raises(ValueError, match="'paused'"):
        StepRecord.from_row((*ROW[:4], "paused", *ROW[5:]))


def test_a_row_with_the_version_column_reads_it_and_one_without_reads_none() -> None:
    assert StepRecord.from_row(ROW).version is None
    assert StepRecord.from_row((*ROW, "2026.12.1")).version == "2026.12.1"
    versioned = StepRecord.from_rows("run-1", [(*ROW[1:], "2026.12.1"), ROW[1:]])
    assert [r.version for r in versioned] == ["2026.12.1", None]
    assert versioned[0] == StepRecord.from_row((*ROW, "2026.12.1"))


def test_from_rows_builds_the_same_records_as_from_row() -> None:
    rows = [ROW[1:], ("save", "save", "e" * 32, "failed", None, '{"type": "E"}', 3, 12.0, 13.0)]
    records = StepRecord.from_rows("run-1", rows)
    assert records == [StepRecord.from_row(("run-1", *row)) for row in rows]
    assert [record.status for record in records] == [StepStatus.COMPLETED, StepStatus.FAILED]
    # Built without __init__, still the same frozen dataclass in every way.
    first, same = records[0], StepRecord.from_row(("run-1", *rows[0]))
    assert hash(first) == hash(same) and repr(first) == repr(same)
    assert dataclasses.replace(first, key="x").key == "x"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.key = "y"  # type: ignore[misc]


def test_from_rows_refuses_a_row_of_another_shape() -> None:
    with pytest.raises(ValueError, match="9 or 10 values, got 11"):
        StepRecord.from_rows("run-1", [(*ROW, "1.0")])
    with pytest.raises(ValueError, match="not a valid StepStatus"):  # the run id column given too
        StepRecord.from_rows("run-1", [ROW])
    with pytest.raises(ValueError, match="'paused'"):
        StepRecord.from_rows("run-1", [(*ROW[1:4], "paused", *ROW[5:])])
