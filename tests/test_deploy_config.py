"""What ships, checked without Docker or Fly (neither runs here): the image's Dockerfile and
lock file, the Fly.io configuration of each environment, the compose file."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from typer.testing import CliRunner

from system2 import cli

ROOT = Path(__file__).resolve().parent.parent
SECRETISH = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|VAULT_KEYS|DSN|DATABASE_URL|REDIS_URL", re.I)
ENVIRONMENTS = ("dev", "staging", "production")


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    logical, out = "", []
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not logical:
            continue
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        if logical.strip():
            op, _, args = logical.strip().partition(" ")
            out.append((op.upper(), " ".join(args.split())))
        logical = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    run_steps = " ".join(args for op, args in final_stage() if op == "RUN")
    assert f"--uid {user}" in run_steps  # the user exists in the image


def test_dependencies_come_only_from_the_lock_with_exact_pins() -> None:
    steps = dockerfile()
    assert ("COPY", "deploy/requirements.lock ./requirements.lock") in steps
    installs = [
        part.strip()
        for op, args in steps
        if op == "RUN"
        for part in args.split("&&")
        if "pip install" in part
    ]
    assert any("--no-deps -r requirements.lock" in i for i in installs), installs
    for command in installs:
        assert "--no-deps" in command, f"{command!r} may pull unpinned dependencies"
        words = shlex.split(command)
        packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        for p in packages:
            assert p in ("requirements.lock", ".") or re.fullmatch(r"[\w.\-]+==[\w.]+", p), p
    assert any("pip check" in args for op, args in steps if op == "RUN")
    for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+]+", line), line


def test_the_lock_covers_pyproject_and_is_consistent() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {
        canonicalize_name(n): v
        for n, v in (
            line.split("==")
            for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")
        )
    }
    stale = "regenerate it with `.venv/bin/python deploy/lock.py`"
    for raw in pyproject["project"]["dependencies"]:
        req = Requirement(raw)
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} is in pyproject but not in the lock: {stale}"
        assert req.specifier.contains(pins[key], prereleases=True), (
            f"the lock pins {req.name}=={pins[key]}, outside pyproject's {req.specifier}: {stale}"
        )
    # Each pinned distribution installed here at the pinned version brings no requirement the
    # lock lacks (pip check repeats this in the image build).
    for key, version in pins.items():
        try:
            dist = distribution(key)
        except PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert canonicalize_name(req.name) in pins, f"{key} needs {req.name}: {stale}"


def test_no_secret_is_baked_into_the_image() -> None:
    for op, args in dockerfile():
        if op in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]:
                assert not SECRETISH.search(name), f"{op} {args}"
        if op in ("COPY", "ADD"):
            assert not re.search(r"(^|\s)\.(\s|$)", args.split("--from=build")[0]), (
                f"{op} {args}: copy what the image needs, never the whole context"
            )
            assert not re.search(r"\.env\b|\.pem\b|\.key\b|\.s2/", args), args
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[line.strip() for line in ignore].index("*")] == "*"  # deny by default
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, args in dockerfile():
        if op == "COPY" and "--from=" not in args:
            *sources, _ = args.split()
            for src in sources:
                assert src.rstrip("/") in allowed, f"{src} is excluded by .dockerignore"
                assert (ROOT / src).exists(), src


def test_the_entrypoint_is_system2_with_or_without_the_word(tmp_path: Path) -> None:
    steps = dict(final_stage())
    assert steps["ENTRYPOINT"] == '["/app/deploy/entrypoint.sh"]'
    stub = tmp_path / "system2"
    stub.write_text('#!/bin/sh\necho "system2 $*"\n')
    stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    for args, expect in [
        (["system2", "migrate"], "system2 migrate"),
        (["worker", "--queues", "audit"], "system2 worker --queues audit"),
    ]:
        out = subprocess.run(
            ["sh", str(ROOT / "deploy" / "entrypoint.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expect


def fly(env: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "deploy" / "fly" / f"{env}.toml").read_text())


@cache
def help_of(*sub: str) -> int:
    """The exit code of `system2 <sub…> --help` (the real command tree, in process)."""
    return CliRunner().invoke(cli.app, [*sub, "--help"]).exit_code


def help_exits_0(command: str) -> None:
    """`system2 <subcommand…> --help` exits 0 for the subcommand a config line runs."""
    words = shlex.split(command)
    assert words[0] == "system2", command
    sub = [w for w in words[1:3] if not w.startswith("-")]
    if sub[:1] != ["ops"]:
        sub = sub[:1]
    assert help_of(*sub) == 0, command


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_fly_config_of_each_environment(env: str) -> None:
    cfg = fly(env)
    assert cfg["app"] == f"system2-{env}"
    assert cfg["deploy"]["strategy"] == "bluegreen"
    assert cfg["deploy"]["release_command"] == "system2 migrate"
    assert cfg["env"]["S2_ENV"] == env
    for key, value in cfg["env"].items():
        assert not SECRETISH.search(key), f"{key} belongs in fly secrets"
        assert "@" not in str(value) and "://" not in str(value), key

    procs = cfg["processes"]
    assert set(procs) == {"ingress", "worker", "audit"}
    ingress, worker, audit = (shlex.split(procs[p]) for p in ("ingress", "worker", "audit"))
    assert ingress[:2] == ["system2", "ingress"] and "0.0.0.0" in ingress and "8080" in ingress
    assert worker[:3] == ["system2", "ops", "run-worker"]
    assert audit[:3] == ["system2", "ops", "run-worker"]
    assert queues(worker) == ["quests", "control", "maintenance", "webhooks"]
    assert queues(audit) == ["audit"]
    for command in (*procs.values(), cfg["deploy"]["release_command"]):
        help_exits_0(command)

    http = cfg["http_service"]
    assert http["processes"] == ["ingress"] and http["internal_port"] == 8080
    assert [c["path"] for c in http["checks"]] == ["/readyz"]
    checks = cfg["checks"]
    (consuming,) = checks.values()
    assert sorted(consuming["processes"]) == ["audit", "worker"]
    assert consuming["type"] == "http" and consuming["path"] == "/health"
    for words in (worker, audit):
        assert option(words, "--health-port") == str(consuming["port"])

    # Workers give up on a step before Fly kills them: they hand it back, it is redelivered.
    assert cfg["kill_signal"] == "SIGTERM"
    assert float(cfg["env"]["S2_SHUTDOWN_GRACE_S"]) < cfg["kill_timeout"] - 5


def queues(words: list[str]) -> list[str]:
    i = words.index("--queues") + 1
    out = []
    while i < len(words) and not words[i].startswith("-"):
        out.append(words[i])
        i += 1
    return out


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def test_environments_differ_only_where_they_should() -> None:
    apps = {fly(env)["app"] for env in ENVIRONMENTS}
    assert len(apps) == 3
    base = fly("staging")
    for env in ("dev", "production"):
        cfg = fly(env)
        assert cfg["processes"] == base["processes"]
        assert cfg["checks"] == base["checks"]
        assert cfg["deploy"] == base["deploy"]
    assert fly("production")["http_service"]["min_machines_running"] >= 2


def test_compose_runs_redis_as_production_does_and_postgres_15() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    assert "--appendfsync everysec" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd
    assert services["postgres"]["image"].startswith("postgres:15")
    for name in ("ingress", "worker", "audit"):
        svc = services[name]
        assert svc["profiles"] == ["app"]
        help_exits_0(" ".join(svc["command"]))
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD"
        help_exits_0(" ".join(test[1:4]))
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
