"""Every Redis key is named in ``messages/redis_keys.py``, and its table says what each one is.

An operator reading the table must be able to trust it: every builder there has a row and
every row a builder that makes exactly the key the row shows, the keys the leaves name
themselves (guard, vault) are made as their rows say, and no module names a key on its own.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from guard import Admissions, Guard, Limits
from messages import redis_keys as keys
from vault import RedisEncryptionCounter

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    "messages",
    "store",
    "guard",
    "vault",
    "runtime",
    "workers",
    "ingress",
    "system2",
    "standins",
    "bench",
    "deploy",
]
COLUMNS = ["key", "defined as", "type", "written by", "lifetime", "holds"]
# The start of a key in a string literal: ours (s2:..., s2scratch:...), Dramatiq's, or a
# piece of a Dramatiq key built in an f-string. (The benchmarks' throwaway keys, bench:... and
# s2bench:..., are their own.)
KEY_LITERAL = re.compile(r"^(s2|s2scratch|dramatiq):|__acks__|__heartbeats__|\.XQ\b|\.msgs\b")


def table() -> list[dict[str, str]]:
    lines = [line for line in (keys.__doc__ or "").splitlines() if line.startswith("|")]
    header, rule, *rows = lines
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    assert set(rule) <= {"|", "-"}
    found = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        assert len(cells) == len(COLUMNS), row
        assert all(cells), f"a row with an empty cell: {row}"
        found.append(dict(zip(COLUMNS, cells, strict=True)))
    return found


def names_in(row: dict[str, str]) -> list[str]:
    return [n for n in row["defined as"].split(", ") if "/" not in n]


def leaf_file(row: dict[str, str]) -> str | None:
    paths = [n for n in row["defined as"].split(", ") if "/" in n]
    assert len(paths) <= 1, row
    return paths[0] if paths else None


def pattern(key: str) -> re.Pattern[str]:
    """The table's key with each ``<placeholder>`` standing for any non-empty text."""
    parts = re.split(r"(<[^>]+>)", key)
    return re.compile("".join(".+?" if p.startswith("<") else re.escape(p) for p in parts))


def builders() -> dict[str, Any]:
    """Every public name of messages.redis_keys: str constants and the functions defined there."""
    return {
        name: value
        for name, value in vars(keys).items()
        if not name.startswith("_")
        and (
            isinstance(value, str)
            or (inspect.isfunction(value) and value.__module__ == keys.__name__)
        )
        and name != "annotations"
    }


def rendered(builder: Callable[..., str]) -> str:
    """What a builder makes of placeholders ``<arg>`` for its required arguments."""
    params = inspect.signature(builder).parameters.values()
    return builder(*(f"<{p.name}>" for p in params if p.default is inspect.Parameter.empty))


def test_every_builder_has_a_row_and_every_row_a_builder() -> None:
    rows = table()
    in_table = [n for row in rows for n in names_in(row)]
    assert len(in_table) == len(set(in_table)), "a name has two rows"
    assert sorted(in_table) == sorted(builders())
    listed = [row["key"] for row in rows]
    assert len(listed) == len(set(listed)), "a key has two rows"


def test_each_builder_makes_the_key_its_row_shows() -> None:
    for row in table():
        for name in names_in(row):
            value = builders()[name]
            if isinstance(value, str):  # a fixed key, or the prefix of the row's keys
                assert row["key"].startswith(value), (name, row["key"])
            elif name.endswith("_prefix"):  # the prefix of a family of keys, made per queue
                assert row["key"].startswith(rendered(value) + ":"), (name, row["key"])
            else:
                assert rendered(value) == row["key"], name


def test_the_keys_existing_data_lives_under_are_unchanged() -> None:
    """A few keys spelled out in full: data already in Redis is read under these names."""
    quest = "0b7e6a52-7d0c-4a51-9d5d-3f1c4a1e2b3c"
    assert keys.cancel_flag_key(quest) == f"s2:cancel:{quest}"
    assert keys.CANCEL_CHANNEL == "s2:cancels"
    assert keys.quest_stream_key(quest) == f"s2:events:quest:{quest}"
    assert keys.company_stream_key(quest) == f"s2:events:{quest}"
    assert keys.DEAD_LETTER_REASONS == "s2:dlq:reasons"
    assert keys.dead_letters_key("quests") == "dramatiq:quests.XQ"
    assert keys.acks_key("w1", "quests.DQ") == "dramatiq:__acks__.w1.quests.DQ"
    assert keys.breaker_open_key("demo") == "s2:breaker:demo:open"


def leaf_keys() -> dict[str, list[str]]:
    """The keys the guard and the vault make, by the leaf module that makes them."""
    client = redis.Redis()  # never connected: nothing here talks to Redis
    company, quest = "<company_id>", "<quest_id>"
    limits = Limits(quest_cap=1, quest_ceiling=1, daily_budget=1, monthly_budget=1)
    at = datetime(2025, 1, 31, tzinfo=UTC)

    class Recorder:
        """Takes the keys a guard script is run with."""

        def __init__(self) -> None:
            self.keys: list[str] = []

        async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
            self.keys.extend(keys_and_args[:numkeys])
            return 1

    recorder = Recorder()
    admissions = Admissions(recorder)
    asyncio.run(admissions.start(company, 60, 0))
    guard = Guard(client)
    return {
        "guard/spend.py": [
            *(s.key for s in guard.scopes(company, quest, 1, limits, at)),
            guard.reservation_key(company, "<charge_key>"),
        ],
        "guard/admission.py": [*recorder.keys, admissions.slots_key(company)],
        "vault/counter.py": [RedisEncryptionCounter(client).key("<kid>")],
    }


def test_the_keys_the_leaves_make_are_the_ones_their_rows_show() -> None:
    made = leaf_keys()
    rows = [row for row in table() if leaf_file(row)]
    assert {leaf_file(row) for row in rows} == set(made)
    for module, produced in made.items():
        shown = [row["key"] for row in rows if leaf_file(row) == module]
        for key in produced:
            assert [s for s in shown if pattern(s).fullmatch(key)], f"{module} makes {key}"
        for s in shown:
            assert [k for k in produced if pattern(s).fullmatch(k)], f"no {s} in {module}"


def key_literals(path: Path) -> list[tuple[int, str]]:
    """String literals in a module that look like a Redis key (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and KEY_LITERAL.search(node.value)
    ]


def test_no_module_names_a_redis_key_of_its_own() -> None:
    allowed = {ROOT / "messages" / "redis_keys.py"} | {
        ROOT / f for row in table() if (f := leaf_file(row))
    }
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in allowed
        for line, text in key_literals(path)
    ]
    assert not found, "Redis key names belong in messages/redis_keys.py:\n" + "\n".join(found)


@pytest.mark.parametrize("literal", ['"s2:cancel:x"', 'f"s2:lock:{a}"', 'f"{ns}:__acks__.{w}"'])
def test_the_scan_sees_a_key_literal(tmp_path: Path, literal: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(f'"""s2:docstrings are fine."""\n\nKEY = {literal}\n')
    assert [line for line, _ in key_literals(module)] == [3]
