"""The install the image makes, checked without Docker (it does not run here).

``deploy/Dockerfile`` copies a few paths into a build context and runs a non-editable
``pip install --no-deps --no-build-isolation .`` with pinned setuptools and wheel. Every other
test runs the editable install, which finds any module in the checkout whether or not the
packaging config names it. So here: assemble the build context from the Dockerfile's own COPY
lines, build the wheel with the Dockerfile's pins, install it into a fresh virtualenv outside
the checkout and, from a directory outside the checkout, run ``system2 --help``, import every
module of every package the checkout has, and load the migrations, the Lua scripts and the
price table. Nothing is listed by hand: packages, modules and data files are found in the
checkout, so a new subpackage, module, migration or data file is checked the day it is added.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.test_deploy_config import dockerfile

ROOT = Path(__file__).resolve().parent.parent
# Top-level packages of the checkout that never go into the image. Every other directory with an
# ``__init__.py`` at the root is a package that ships and must be in the wheel.
NOT_SHIPPED = frozenset({"tests", "bench", "deploy", "docs"})
# Editor and patch leftovers are not data files.
JUNK = ("*.pyc", "*.pyo", "*.swp", "*.orig", "*.rej", "*~", ".*")


def shipped_packages() -> list[str]:
    return sorted(
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in NOT_SHIPPED and not p.parent.name.startswith(".")
    )


def context_excludes() -> list[str]:
    """Name patterns ``.dockerignore`` keeps out of the build context at any depth."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip()[3:] for line in lines if line.strip().startswith("**/")]


def excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in (*JUNK, *context_excludes()))


def package_files(top: str) -> list[Path]:
    """Every file of a shipped package that reaches the build context, relative to the root."""
    out = []
    for path in sorted((ROOT / top).rglob("*")):
        rel = path.relative_to(ROOT)
        if path.is_file() and not any(
            excluded(part) or part == "__pycache__" for part in rel.parts
        ):
            out.append(rel)
    return out


def checkout_modules(tops: list[str]) -> set[str]:
    modules = set()
    for top in tops:
        for rel in package_files(top):
            if rel.suffix == ".py":
                parts = rel.with_suffix("").parts
                modules.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def build_stage() -> list[tuple[str, str]]:
    """The Dockerfile's steps from its first FROM up to the one that installs the project."""
    steps = dockerfile()
    froms = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    stage = steps[froms[0] : froms[1]] if len(froms) > 1 else steps
    for i, (op, args) in enumerate(stage):
        if op == "RUN" and any(project_install(part) for part in args.split("&&")):
            return stage[: i + 1]
    raise AssertionError("deploy/Dockerfile has no `pip install … .` of the project")


def project_install(command: str) -> bool:
    words = shlex.split(command)
    return any(w.endswith("pip") for w in words) and "install" in words and "." in words


def build_tool_pins() -> list[str]:
    """The ``name==version`` pins the Dockerfile installs beside the lock to build the project."""
    pins = []
    for op, args in build_stage():
        if op == "RUN":
            pins += re.findall(r"(?:^|\s)((?:setuptools|wheel)==[\w.]+)", args)
    return pins


def copied_paths() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context before the install."""
    out = []
    for op, args in build_stage():
        if op == "COPY" and "--from=" not in args:
            *sources, dest = args.split()
            out.append((sources, dest))
    return out


def assemble_context(dest_root: Path) -> None:
    """What the Docker build sees in WORKDIR: the COPY lines applied to a copy of the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", *JUNK, *context_excludes())
    for sources, dest in copied_paths():
        assert not dest.startswith("/"), f"COPY {sources} {dest}: expected a path under WORKDIR"
        target = dest_root / dest
        for src in sources:
            origin = ROOT / src
            to = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
            to.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, to, ignore=ignore, dirs_exist_ok=True)
            else:
                shutil.copy2(origin, to)


def run(cmd: Sequence[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, (
        f"{shlex.join(str(c) for c in cmd)} exited {result.returncode}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


def clean_env(venv: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


# Run by the installed interpreter from outside the checkout; prints one JSON object.
PROBE = r"""
import importlib, json, pkgutil, sys, traceback
from datetime import date

args = json.loads(sys.argv[1])
site = args["site"]
out = {"imported": [], "errors": {}, "elsewhere": {}}

def failed(name):
    out["errors"][name] = traceback.format_exc(limit=3)

for top in args["tops"]:
    try:
        pkg = importlib.import_module(top)
    except Exception:
        failed(top)
        continue
    out["imported"].append(top)
    for info in pkgutil.walk_packages(pkg.__path__, top + ".", onerror=failed):
        try:
            importlib.import_module(info.name)
        except Exception:
            failed(info.name)
        else:
            out["imported"].append(info.name)

for name, module in sorted(sys.modules.items()):
    where = getattr(module, "__file__", None) or ""
    if name.split(".")[0] in args["tops"] and where and not where.startswith(site):
        out["elsewhere"][name] = where

def attempt(key, fn):
    try:
        out[key] = fn()
    except Exception:
        out[key] = "error: " + traceback.format_exc(limit=4)

def migrations():
    from store.migrate import load_migrations
    return [f"{m.version:04d}_{m.name}" for m in load_migrations()]

def migrations_dir():
    from store.migration_check import project_migrations_dir
    return sorted(p.name for p in project_migrations_dir().glob("*.sql"))

def lua():
    import redis
    from guard.scripts import LuaScript
    client = redis.Redis()  # never contacted: a script reads its source when it is made
    return {name: LuaScript(client, name).source for name in args["lua"]}

def prices():
    from guard.pricing import PriceTable
    table = PriceTable.load()
    return {m: table.price(m, date(9999, 1, 1)).model for m in args["models"]}

def console():
    from ingress.routes_console import ASSETS, PAGE, console_file
    return {name: console_file(name).decode() for name in (PAGE, *ASSETS)}

attempt("migrations", migrations)
attempt("console", console)
attempt("migrations_dir", migrations_dir)
attempt("lua", lua)
attempt("prices", prices)
print(json.dumps(out))
"""


def test_every_package_is_found_by_the_packaging_config_and_copied_into_the_image() -> None:
    tops = shipped_packages()
    assert {"messages", "store", "guard", "vault", "workers", "ingress", "system2"} <= set(tops)
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "packages" not in setuptools_cfg or isinstance(setuptools_cfg["packages"], dict), (
        "[tool.setuptools] packages = [...] names packages exactly and leaves out subpackages:"
        " use [tool.setuptools.packages.find]"
    )
    include = setuptools_cfg["packages"]["find"]["include"]
    for top in tops:
        for name in (top, f"{top}.sub"):
            assert any(fnmatch.fnmatch(name, pat) for pat in include), (
                f"{name} matches no [tool.setuptools.packages.find] include pattern"
            )
    for top in NOT_SHIPPED:
        assert not any(fnmatch.fnmatch(top, pat) for pat in include), top
    copied = {Path(src).parts[0] for sources, _ in copied_paths() for src in sources}
    for top in tops:
        assert top in copied, (
            f"deploy/Dockerfile does not COPY {top}/ before it installs the project:"
            " the image would be built without it (and allow it in .dockerignore)"
        )


@pytest.mark.slow
def test_the_wheel_built_like_the_image_installs_and_runs_outside_the_checkout(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    assert not tmp_path.resolve().is_relative_to(ROOT)
    tops = shipped_packages()
    context, dist, venv, elsewhere = (tmp_path / d for d in ("src", "dist", "venv", "elsewhere"))
    elsewhere.mkdir()
    env = clean_env(venv)

    # The Dockerfile's build stage: its build context, a fresh venv, the pinned build tools.
    assemble_context(context)
    pins = build_tool_pins()
    assert any(p.startswith("setuptools==") for p in pins), "the Dockerfile pins no setuptools"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", venv], elsewhere, env)
    py = venv / "bin" / "python"
    pip: list[str | Path] = [py, "-m", "pip", "--quiet"]
    run([*pip, "install", "--no-deps", *pins], elsewhere, env)
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, context], elsewhere, env)
    (wheel,) = dist.glob("*.whl")
    run([*pip, "install", "--no-deps", wheel], elsewhere, env)
    # The image's runtime has no build tools; the dependencies come from this venv, after the
    # new venv's own site-packages (a plain path: this venv's .pth files, among them the
    # editable install's finder, are not run, so nothing resolves to the checkout).
    run([*pip, "uninstall", "--yes", *(p.partition("==")[0] for p in pins)], elsewhere, env)
    site = Path(
        run(
            [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], elsewhere, env
        ).strip()
    )
    assert not site.resolve().is_relative_to(ROOT), site
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz_dependencies_from_the_test_venv.pth").write_text("\n".join(sorted(ours)) + "\n")
    built = time.monotonic() - started

    lua_names = sorted(p.stem for p in (ROOT / "guard" / "lua").glob("*.lua"))
    models = sorted(
        {
            m
            for entry in tomllib.loads((ROOT / "guard" / "prices.toml").read_text())["price"]
            for m in entry["models"]
        }
    )
    probe_args = {"tops": tops, "site": str(site), "lua": lua_names, "models": models}
    probe: dict[str, Any] = json.loads(
        run([py, "-c", PROBE, json.dumps(probe_args)], elsewhere, env)
    )

    missing = checkout_modules(tops) - set(probe["imported"])
    assert not missing, (
        f"modules of the checkout missing from the installed wheel: {sorted(missing)}"
    )
    assert not probe["errors"], "\n".join(f"{k}:\n{v}" for k, v in probe["errors"].items())
    assert not probe["elsewhere"], (
        f"imported from outside the installed wheel: {probe['elsewhere']}"
    )

    # The console script, from a directory outside the checkout.
    help_text = run([venv / "bin" / "system2", "--help"], elsewhere, env)
    assert "migrate" in help_text, help_text

    # Every data file of every package is installed (package-data), and the code finds them.
    for top in tops:
        for rel in package_files(top):
            if rel.suffix != ".py":
                assert (site / rel).is_file(), (
                    f"{rel} is not in the wheel: add it to [tool.setuptools.package-data]"
                )
    sql = sorted(p.name for p in (ROOT / "store" / "migrations").glob("*.sql"))
    assert probe["migrations_dir"] == sql
    assert isinstance(probe["migrations"], list), probe["migrations"]
    assert len(probe["migrations"]) == len(sql), (probe["migrations"], sql)
    assert probe["lua"] == {
        name: (ROOT / "guard" / "lua" / f"{name}.lua").read_text(encoding="utf-8")
        for name in lua_names
    }
    assert probe["prices"] == {m: m for m in models}, probe["prices"]
    # The operator console's static files, as the installed ingress serves them.
    console_dir = ROOT / "ingress" / "console"
    assert probe["console"] == {
        p.name: p.read_text(encoding="utf-8") for p in sorted(console_dir.iterdir())
    }, "the console's files are not all in the wheel (or the ingress does not find them)"
    print(
        f"built and installed in {built:.1f}s, checked in {time.monotonic() - started - built:.1f}s"
    )
