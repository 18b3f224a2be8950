"""Only the settings object reads the environment: every other module of ours is given its
settings. Nothing of ours writes the environment either (a child process that needs a variable
is given an environment of its own).

The one use of ``os.environ`` allowed outside ``runtime/settings.py`` is a copy of the whole
of it, to hand to a child process as its environment: ``dict(os.environ)``,
``dict(os.environ, NAME=...)``, ``{**os.environ, ...}`` or ``os.environ.copy()``. Any other mention — ``os.environ.get``,
``os.environ[...]``, ``in os.environ``, ``.setdefault``, ``.update``, ``.pop``, ``del``,
``os.getenv``, ``os.putenv``, ``os.unsetenv``, ``from os import environ`` — is refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("messages", "store", "guard", "vault", "runtime", "workers", "ingress", "system2")
PACKAGES += ("standins",)
SETTINGS = Path("runtime/settings.py")
ENVIRONMENT = {"environ", "environb"}
FUNCTIONS = {"getenv", "getenvb", "putenv", "unsetenv"}


def sources() -> list[Path]:
    return sorted(p.relative_to(ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _os_names(tree: ast.AST) -> set[str]:
    """The names the module binds to the ``os`` module (``import os``, ``import os as o``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name == "os"}
    return names


def _is_environ(node: ast.AST, os_names: set[str]) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ENVIRONMENT
        and isinstance(node.value, ast.Name)
        and node.value.id in os_names
    )


def _copies(tree: ast.AST, os_names: set[str]) -> set[int]:
    """The ``os.environ`` nodes (by id) that are copied whole, and the copy used as a whole
    (not read from on the spot, as ``dict(os.environ)["X"]``): the allowed uses."""
    read_from = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Subscript | ast.Attribute)
    }
    allowed = set()
    for node in ast.walk(tree):
        if id(node) in read_from:
            continue
        if (  # dict(os.environ), dict(os.environ, NAME=...)
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and len(node.args) == 1
            and _is_environ(node.args[0], os_names)
        ):
            allowed.add(id(node.args[0]))
        elif isinstance(node, ast.Dict):  # {**os.environ, ...}
            allowed |= {
                id(v)
                for k, v in zip(node.keys, node.values, strict=True)
                if k is None and _is_environ(v, os_names)
            }
        elif (  # os.environ.copy()
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "copy"
            and not node.args
            and not node.keywords
            and _is_environ(node.func.value, os_names)
        ):
            allowed.add(id(node.func.value))
    return allowed


def environment_uses(path: Path) -> list[str]:
    """Each place in ``path`` that reads or writes the environment, as ``path:line: code``."""
    text = (ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    os_names = _os_names(tree)
    allowed = _copies(tree, os_names)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            bad = [a.name for a in node.names if a.name in ENVIRONMENT | FUNCTIONS | {"*"}]
            if bad:
                found.append(node)
        elif _is_environ(node, os_names):
            if id(node) not in allowed:
                found.append(node)
        elif (  # os.getenv, os.putenv, ...
            isinstance(node, ast.Attribute)
            and node.attr in FUNCTIONS
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            found.append(node)
    lines = text.splitlines()
    return [
        f"{path}:{n.lineno}: {lines[n.lineno - 1].strip()}"
        for n in sorted(found, key=lambda n: (n.lineno, n.col_offset))
    ]


def test_the_packages_are_found() -> None:
    found = sources()
    assert SETTINGS in found
    assert {p.parts[0] for p in found} == set(PACKAGES)


def test_only_the_settings_module_reads_or_writes_the_environment() -> None:
    uses = [use for path in sources() if path != SETTINGS for use in environment_uses(path)]
    assert uses == [], "the environment is read or written outside runtime/settings.py " + (
        "(take the value from runtime.settings instead):\n" + "\n".join(uses)
    )


BAD = [
    "import os\nx = os.environ.get('A')",
    "import os\nx = os.environ['A']",
    "import os\nx = os.getenv('A')",
    "import os\nx = 'A' in os.environ",
    "import os\nos.environ['A'] = '1'",
    "import os\nos.environ.setdefault('A', '1')",
    "import os\nos.environ.update(A='1')",
    "import os\nos.environ.pop('A')",
    "import os\ndel os.environ['A']",
    "import os\nos.putenv('A', '1')",
    "import os as o\nx = o.environ.get('A')",
    "from os import environ",
    "from os import getenv",
    "import os\nx = dict(os.environ)['A']",
    "import os\nx = os.environ.copy().get('A')",
    "import os\nx = {**os.environ}.get('A')",
]
GOOD = [
    "import os\nenv = dict(os.environ)",
    "import os\nenv = dict(os.environ, A='1')",
    "import os\nenv = {**os.environ, 'A': '1'}",
    "import os\nenv = os.environ.copy()\nenv['A'] = '1'",
    "import os\nenv = dict(os.environ)\nenv.setdefault('A', '1')",
    "import os\nx = os.path.join('a', 'b')",
]


@pytest.mark.parametrize("code", BAD)
def test_a_read_or_a_write_is_found(tmp_path: Path, code: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(code)
    assert environment_uses(module)


@pytest.mark.parametrize("code", GOOD)
def test_a_copy_for_a_child_process_is_allowed(tmp_path: Path, code: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(code)
    assert environment_uses(module) == []
