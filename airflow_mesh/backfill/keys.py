"""Key ranges: the unit a backfill is cut into, for any orderable key (one column or several).

A range is the half-open interval ``[lo, hi)`` of the key in **byte order** (text compares by its
UTF-8 bytes, as Iceberg, Elasticsearch's keywords, Arrow and PostgreSQL's ``"C"`` collation do), so
that a range holds the same rows in the source and in every target. A bound is a key value, a tuple
of values for a composite key, or None: unbounded.

Bounds are kept in their JSON form (what checkpoints and XCom store): integers and floats as
numbers, everything else (text, uuids, decimals, dates, timestamps) as text, which every store reads
back into the column's type (PostgreSQL and MariaDB coerce a quoted literal to the column's type,
pyiceberg binds a string literal to the field's type).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from airflow_mesh.backfill.errors import PlanError

Bound = Any  # a JSON-form key value, a tuple of them (composite keys), or None (unbounded)
T = TypeVar("T")


def json_value(value: Any) -> Any:
    """A key value as JSON holds it: integers and floats as they are, text as it is, and every other
    type (decimals, dates, timestamps, uuids) as its exact text.

    Raises:
        PlanError: a value with no exact text (NaN, binary).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlanError(f"key value {value!r} cannot bound a range")
        return value
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        raise PlanError("a binary key cannot bound ranges; name another key column with `key`")
    return str(value)


def json_bound(values: Sequence[Any]) -> Bound:
    """The bound of a key given as one value per key column: a scalar for one column, else a tuple."""
    converted = tuple(json_value(v) for v in values)
    return converted[0] if len(converted) == 1 else converted


@dataclass(frozen=True)
class KeyRange:
    """The half-open key interval ``[lo, hi)`` of a range; None is unbounded.

    Integer ranges of a single-column key keep the readable id ``lo-hi`` (``10001-15001``); any
    other range's id is a digest of its bounds (ids name checkpoints and staged files).
    """

    lo: Bound = None
    hi: Bound = None

    def __post_init__(self) -> None:  # JSON gives lists: keep tuples, so ranges hash and compare
        for side in ("lo", "hi"):
            value = getattr(self, side)
            if isinstance(value, list):
                object.__setattr__(self, side, tuple(value))

    @property
    def integral(self) -> bool:
        """Both bounds are integers (a plan cut in key space)."""
        return all(isinstance(b, int) and not isinstance(b, bool) for b in (self.lo, self.hi))

    @property
    def id(self) -> str:
        """A stable name, used in checkpoints, file names and error messages."""
        if self.integral:
            return f"{self.lo}-{self.hi}"
        digest = hashlib.sha256(json.dumps([self.lo, self.hi], separators=(",", ":")).encode()).hexdigest()
        return f"k{digest[:16]}"

    @property
    def label(self) -> str:
        """A short human description: ``10001-15001``, ``[a, m)``, ``[(1, 'x'), ∞)``."""
        if self.integral:
            return self.id

        def show(bound: Bound, open_text: str) -> str:
            if bound is None:
                return open_text
            text = repr(bound) if isinstance(bound, tuple) else str(bound)
            return text if len(text) <= 40 else text[:37] + "..."

        return f"[{show(self.lo, '-∞')}, {show(self.hi, '∞')})"

    def to_dict(self) -> dict[str, Any]:
        """``{"lo": ..., "hi": ...}``: JSON (tuples become lists)."""
        return {"lo": list(self.lo) if isinstance(self.lo, tuple) else self.lo,
                "hi": list(self.hi) if isinstance(self.hi, tuple) else self.hi}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRange:
        """The inverse of ``to_dict``."""
        return cls(data.get("lo"), data.get("hi"))


def parts(bound: Bound, width: int) -> tuple[Any, ...]:
    """A bound as one value per key column."""
    values = bound if isinstance(bound, tuple) else (bound,)
    if len(values) != width:
        raise PlanError(f"a key bound {bound!r} has {len(values)} values for a key of {width} columns")
    return values


def merged(ranges: Sequence[KeyRange]) -> list[KeyRange]:
    """Ranges that touch (one's ``hi`` is another's ``lo``) joined into one: fewer, larger
    predicates for a delete or a scan. Needs no ordering of the values, only their equality."""
    by_lo = {r.lo: r for r in ranges}
    his = {r.hi for r in ranges}
    result: list[KeyRange] = []
    used: set[KeyRange] = set()
    for start in ranges:
        if start in used or (start.lo is not None and start.lo in his):
            continue  # not the first of a chain
        current = start
        used.add(current)
        while current.hi is not None and by_lo.get(current.hi) not in (None, *used):
            current = by_lo[current.hi]
            used.add(current)
        result.append(KeyRange(start.lo, current.hi))
    result += [r for r in dict.fromkeys(ranges) if r not in used]  # a cycle or a duplicate: kept as is
    return result


def lexicographic(columns: Sequence[str], bound: tuple[Any, ...], inclusive: bool, above: bool,
                  compare: Callable[[str, str, Any], T], equal: Callable[[str, Any], T],
                  all_of: Callable[[list[T]], T], any_of: Callable[[list[T]], T]) -> T:
    """A row-value comparison ``(a, b) >= (x, y)`` spelled with single-column ones, for stores that
    have no row values (Iceberg, Elasticsearch, Arrow): ``a > x OR (a = x AND b >= y)``.

    Args:
        columns: The key columns.
        bound: One value per column.
        inclusive: ``>=`` / ``<=`` rather than ``>`` / ``<``.
        above: Keys above the bound (``>``), else below (``<``).
        compare: ``compare(column, op, value)`` for op in ``>``, ``>=``, ``<``, ``<=``.
        equal: ``equal(column, value)``.
        all_of, any_of: Conjunction and disjunction of several conditions.
    """
    strict, last = (">", ">=" if inclusive else ">") if above else ("<", "<=" if inclusive else "<")
    alternatives = []
    for i, column in enumerate(columns):
        op = last if i == len(columns) - 1 else strict
        alternatives.append(all_of([*(equal(c, bound[j]) for j, c in enumerate(columns[:i])),
                                    compare(column, op, bound[i])]))
    return alternatives[0] if len(alternatives) == 1 else any_of(alternatives)


def range_condition(columns: Sequence[str], key_range: KeyRange, compare: Callable[[str, str, Any], T],
                    equal: Callable[[str, Any], T], all_of: Callable[[list[T]], T],
                    any_of: Callable[[list[T]], T], always: Callable[[], T]) -> T:
    """The condition ``lo <= key < hi`` built with a store's own expression constructors."""
    conditions = []
    if key_range.lo is not None:
        conditions.append(lexicographic(columns, parts(key_range.lo, len(columns)), True, True,
                                        compare, equal, all_of, any_of))
    if key_range.hi is not None:
        conditions.append(lexicographic(columns, parts(key_range.hi, len(columns)), False, False,
                                        compare, equal, all_of, any_of))
    if not conditions:
        return always()
    return conditions[0] if len(conditions) == 1 else all_of(conditions)


def plan_ranges(min_key: int | None, max_key: int | None, rows: int, range_size: int,
                parallelism: int = 1) -> list[KeyRange]:
    """Cut the integer interval ``[min_key, max_key]`` into ranges of about ``range_size`` rows each.

    The cut is even in key space, which matches row counts when keys are dense (sequences); with
    sparse keys some ranges hold fewer rows, which costs nothing but a range.

    Args:
        min_key: The smallest key to copy (None when there are no rows).
        max_key: The largest key to copy.
        rows: How many rows the interval holds.
        range_size: Wanted rows per range (at most; ranges are cut smaller to balance them).
        parallelism: Ranges moved at once: the number of ranges is rounded up to a multiple of it,
            so that the last ranges run side by side rather than one alone while other workers idle.

    Returns:
        Consecutive, non-overlapping ranges covering every key from min_key to max_key; empty
        when there are no rows.

    Raises:
        PlanError: the bounds are reversed.
    """
    if min_key is None or max_key is None or rows == 0:
        return []
    if max_key < min_key:
        raise PlanError(f"key bounds are reversed: min {min_key} > max {max_key}")
    count = range_count(rows, range_size, parallelism)
    span = max_key - min_key + 1
    width = max(1, math.ceil(span / count))
    return [KeyRange(lo, min(lo + width, max_key + 1)) for lo in range(min_key, max_key + 1, width)]


def range_count(rows: int, range_size: int, parallelism: int = 1) -> int:
    """How many ranges ``rows`` are cut into: ``rows / range_size`` rounded up, then up to a
    multiple of ``parallelism``."""
    count = max(1, math.ceil(rows / range_size))
    if parallelism > 1 and count > 1:
        count = math.ceil(count / parallelism) * parallelism
    return count


def ranges_from_sample(sample: Sequence[tuple[Any, ...]], rows: int, range_size: int,
                       parallelism: int = 1) -> list[KeyRange]:
    """Ranges cut at quantiles of a sample of the keys, for keys that are not one integer column
    (text, uuids, dates, composite keys): the first range is unbounded below, the last above, so
    together they hold every key, including keys added after the sample.

    Args:
        sample: Key tuples sampled from the rows (any order; duplicates allowed).
        rows: How many rows there are (or an estimate).
        range_size: Wanted rows per range.
        parallelism: As in ``plan_ranges``.

    Returns:
        Consecutive ranges; one unbounded range when the sample is too small to cut; empty when
        there are no rows.
    """
    if rows == 0 and not sample:
        return []
    count = range_count(max(rows, len(sample)), range_size, parallelism)
    keys = sorted(set(sample))
    boundaries: list[tuple[Any, ...]] = []
    for i in range(1, count):
        candidate = keys[min(len(keys) - 1, (i * len(keys)) // count)] if keys else None
        if candidate is not None and (not boundaries or candidate > boundaries[-1]) and candidate > keys[0]:
            boundaries.append(candidate)
    bounds: list[Bound] = [None, *(json_bound(b) for b in boundaries), None]
    return [KeyRange(lo, hi) for lo, hi in pairwise(bounds)]


def extend_ranges(saved: list[KeyRange], min_key: int | None, max_key: int | None) -> list[KeyRange]:
    """A saved integer plan's ranges, plus ranges of the same width for keys the source now has
    outside them (a plan whose ends are unbounded already holds every key).

    A resumed run moves the ranges it was first cut into (their checkpoints stay valid); rows added
    since with larger (or smaller) keys get ranges of their own rather than being missed.

    Args:
        saved: The plan's ranges, consecutive and sorted.
        min_key: The smallest key now (None when the source has no rows).
        max_key: The largest key now.

    Returns:
        The saved ranges, preceded and followed by any ranges needed to cover ``[min_key, max_key]``.
    """
    if not saved or min_key is None or max_key is None or not all(r.integral for r in (saved[0], saved[-1])):
        return list(saved)
    width = max(1, saved[0].hi - saved[0].lo)
    before: list[KeyRange] = []
    hi = saved[0].lo
    while min_key < hi:
        before.insert(0, KeyRange(max(min_key, hi - width), hi))
        hi = before[0].lo
    after: list[KeyRange] = []
    lo = saved[-1].hi
    while lo <= max_key:
        after.append(KeyRange(lo, min(lo + width, max_key + 1)))
        lo = after[-1].hi
    return before + list(saved) + after
