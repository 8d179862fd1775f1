"""Paginated lists: ``?limit=&offset=`` in, ``{items, total, limit, offset}`` out (the shape of
advanced-alchemy's ``OffsetPagination``). Each list has its own page Struct (``ProjectPage``, …)
so that generated clients get a clean type name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

import msgspec
from litestar.params import QueryParameter

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_LIMIT, description=f"at most this many items (at most {MAX_LIMIT})"),
]
Offset = Annotated[int, QueryParameter(ge=0, description="skip this many items first (default 0)")]

T = TypeVar("T")


class Page(msgspec.Struct, kw_only=True):
    """What every page has besides its ``items``: the count of all items, and the window."""

    total: int
    limit: int
    offset: int


def window(items: Sequence[T], limit: int, offset: int) -> list[T]:
    """The page of an in-memory list (containers and sessions are not in the database)."""
    return list(items[offset : offset + limit])
