"""``per_page``/``page`` and the ``Link`` header GitHub paginates with.

Links are absolute, built from the request's own URL with only ``page`` changed, in
GitHub's order: ``prev``, ``next``, ``last``, ``first``, each present only when it leads
somewhere. Like GitHub, a ``per_page`` above 100 is taken as 100 and nonsense as the default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from starlette.datastructures import URL
from starlette.requests import Request

T = TypeVar("T")
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100


def _number(text: str | None, default: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        return default
    return value if value >= 1 else default


@dataclass(frozen=True, slots=True)
class Page:
    per_page: int
    page: int

    @classmethod
    def of(cls, request: Request) -> Page:
        params = request.query_params
        per_page = min(_number(params.get("per_page"), DEFAULT_PER_PAGE), MAX_PER_PAGE)
        return cls(per_page, _number(params.get("page"), 1))

    def cut(self, items: Sequence[T]) -> list[T]:
        start = (self.page - 1) * self.per_page
        return list(items[start : start + self.per_page])

    def link(self, url: URL, total: int) -> str | None:
        last = max(1, math.ceil(total / self.per_page))
        rels: list[tuple[str, int]] = []
        if self.page > 1:
            rels.append(("prev", min(self.page - 1, last)))
        if self.page < last:
            rels += [("next", self.page + 1), ("last", last)]
        if self.page > 1:
            rels.append(("first", 1))
        if not rels:
            return None
        return ", ".join(f'<{url.include_query_params(page=n)}>; rel="{rel}"' for rel, n in rels)


def page_headers(request: Request, page: Page, total: int) -> dict[str, str]:
    link = page.link(request.url, total)
    return {} if link is None else {"Link": link}
