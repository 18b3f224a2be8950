"""The ``q`` of ``GET /search/issues``: GitHub's qualifiers, a useful subset.

Understood: ``repo:o/n`` (several are OR'd), ``user:``/``org:``, ``is:issue``/``type:issue``
and ``is:pr``/``is:pull-request``/``type:pr`` (there are no pull requests here, so those
find nothing), ``is:open``/``is:closed``/``state:…``, ``label:x`` (each one required;
``label:"two words"`` quoted), ``author:``, ``in:title``/``in:body``, and free words,
each of which must occur, case-insensitively, in the title or body (or only where ``in:``
says). An unknown qualifier is a free word, as on GitHub. As GitHub does for a GitHub App's
user token, a query that names neither issues nor pull requests is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from standins.github.errors import validation_failed
from standins.github.repos import Issue, Repo

DOC = "https://docs.github.com/rest/search/search#search-issues-and-pull-requests"
_ISSUE = {"is:issue", "type:issue"}
_PULL = {"is:pr", "is:pull-request", "type:pr", "type:pull-request"}
_STATES = {"is:open": "open", "is:closed": "closed", "state:open": "open", "state:closed": "closed"}


@dataclass(slots=True)
class Query:
    repos: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    state: str | None = None
    labels: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    words: list[str] = field(default_factory=list)

    def matches(self, repo: Repo, issue: Issue) -> bool:
        names = {label.name.lower() for label in issue.labels}
        return (
            "issue" in self.kinds
            and (not self.repos or repo.full_name.lower() in self.repos)
            and (not self.owners or repo.owner.lower() in self.owners)
            and self.state in (None, issue.state)
            and (not self.authors or issue.login.lower() in self.authors)
            and all(label in names for label in self.labels)
            and self._text_matches(issue)
        )

    def _text_matches(self, issue: Issue) -> bool:
        where = self.fields or {"title", "body"}
        texts = [
            issue.title if "title" in where else "",
            issue.body or "" if "body" in where else "",
        ]
        haystack = "\n".join(texts).lower()
        return all(word in haystack for word in self.words)


def _tokens(q: str) -> list[str]:
    try:
        return shlex.split(q)
    except ValueError:  # an unbalanced quote: take the words as they come
        return q.split()


def _qualifier(query: Query, token: str) -> bool:
    """Applies one ``name:value`` qualifier; ``False`` when it is not one we know."""
    name, _, value = token.partition(":")
    name, value = name.lower(), value.lower()
    lists = {"repo": query.repos, "user": query.owners, "org": query.owners}
    lists |= {"label": query.labels, "author": query.authors}
    if name in lists and value:
        lists[name].append(value)
    elif name == "in" and value in ("title", "body", "comments"):
        query.fields.add(value)
    else:
        return False
    return True


def parse(q: str | None) -> Query:
    if not q or not q.strip():
        raise validation_failed(DOC, {"resource": "Search", "field": "q", "code": "missing"})
    query = Query()
    for token in _tokens(q):
        lowered = token.lower()
        if lowered in _ISSUE:
            query.kinds.add("issue")
        elif lowered in _PULL:
            query.kinds.add("pull")
        elif lowered in _STATES:
            query.state = _STATES[lowered]
        elif not _qualifier(query, token):
            query.words.append(lowered)
    if not query.kinds:
        problem = "Query must include 'is:issue' or 'is:pull-request'"
        error = {"message": problem, "resource": "Search", "field": "q", "code": "invalid"}
        raise validation_failed(DOC, error)
    return query
