"""Deploy an image to an environment, smoke it, roll back when it fails; promote to production
only the image of a commit whose staging smoke test passed.

Every Fly.io call goes through ``fly()``, whose binary is ``$FLY`` (default ``fly``): the tests
run these functions with a stand-in executable that records its arguments.

The ledger (``S2_RELEASE_LEDGER``, default ``deploy/state/releases.jsonl``) is append-only JSON
lines, one per deploy: environment, app, commit, image, outcome. The staging deploy writes
``passed`` only after a green smoke test; ``promote`` reads it. In CI keep it on storage that
outlives the job (an artifact or a bucket) — the file is the gate.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runtime.settings import ReleaseSettings
from system2.errors import System2Error
from system2.ops.smoke import SmokeFailed, SmokeResult

ENVIRONMENTS = ("dev", "staging", "production")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{7,40}$")


class DeployError(System2Error):
    """A deploy or promotion did not happen, or was rolled back; one line says why."""


@dataclass(frozen=True)
class Environment:
    name: str
    app: str
    config: Path
    url: str


def fly_dir() -> Path:
    return ReleaseSettings().fly_dir


def ledger_path() -> Path:
    return ReleaseSettings().release_ledger


def environment(name: str, *, url: str | None = None) -> Environment:
    if name not in ENVIRONMENTS:
        raise DeployError(f"no environment {name!r}; known: {', '.join(ENVIRONMENTS)}")
    config = fly_dir() / f"{name}.toml"
    try:
        app = str(tomllib.loads(config.read_text())["app"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise DeployError(f"cannot read the app name from {config}: {exc}") from None
    return Environment(name, app, config, (url or f"https://{app}.fly.dev").rstrip("/"))


def fly(*args: str, timeout: float = 1800) -> str:
    """Run the Fly CLI (``$FLY``, default ``fly``); its stdout, or DeployError with its last
    line of output."""
    binary = ReleaseSettings().fly
    what = "fly " + " ".join(a for a in args[:2] if not a.startswith("-"))
    try:
        done = subprocess.run(  # noqa: S603 - argv built here
            [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise DeployError(f"the Fly CLI ({binary}) is not installed; set FLY=...") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what} did not finish in {timeout:.0f}s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise DeployError(f"{what} failed ({done.returncode}): {tail}")
    return done.stdout


def current_image(env: Environment) -> str | None:
    """The image the environment runs now (``fly image show``), digest-pinned when Fly says."""
    out = fly("image", "show", "--app", env.app, "--json")
    try:
        data: Any = json.loads(out)
    except json.JSONDecodeError:
        return None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        return None
    fields = {k.lower(): v for k, v in data.items()}
    ref = fields.get("ref") or fields.get("imageref")
    if ref:
        return str(ref)
    repo = fields.get("repository")
    if not repo:
        return None
    registry = fields.get("registry")
    name = f"{registry}/{repo}" if registry else str(repo)
    if fields.get("digest"):
        return f"{name}@{fields['digest']}"
    return f"{name}:{fields.get('tag') or 'latest'}"


def fly_deploy(env: Environment, image: str, commit: str) -> None:
    fly(
        "deploy",
        "--config",
        str(env.config),
        "--app",
        env.app,
        "--image",
        image,
        "--strategy",
        "bluegreen",
        "--env",
        f"S2_RELEASE={commit}",
    )


# --- the ledger ------------------------------------------------------------------------


def record(entry: dict[str, Any]) -> None:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry})
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def entries() -> list[dict[str, Any]]:
    path = ledger_path()
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise DeployError(f"{path}:{n} is not JSON: the ledger is damaged") from None
    return out


def staging_pass(commit: str) -> dict[str, Any]:
    """The staging deploy of ``commit`` that passed its smoke test, or DeployError."""
    mine = [e for e in entries() if e.get("env") == "staging" and e.get("commit") == commit]
    if not mine:
        raise DeployError(
            f"commit {commit} has no staging deploy in {ledger_path()}: deploy it to staging first"
        )
    last = mine[-1]
    if last.get("result") != "passed":
        raise DeployError(
            f"the last staging deploy of {commit} ({last.get('at')}) did not pass: "
            f"{last.get('reason') or last.get('result')}"
        )
    return last


# --- deploy and promote ----------------------------------------------------------------

Smoke = Callable[[Environment], SmokeResult]


@dataclass
class DeployOutcome:
    env: str
    image: str
    commit: str
    smoke: SmokeResult
    previous: str | None


def check_inputs(env: Environment, image: str, commit: str) -> None:
    if not COMMIT.match(commit):
        raise DeployError(f"{commit!r} is not a git commit hash (7-40 lowercase hex)")
    if env.name != "dev" and not DIGEST.search(image):
        raise DeployError(
            f"{image} is not pinned by digest (…@sha256:<64 hex>): a tag can move between "
            "staging and production"
        )


def deploy(
    env: Environment,
    image: str,
    commit: str,
    smoke: Smoke,
    *,
    previous: str | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> DeployOutcome:
    """Deploy ``image`` (blue-green, gated by Fly's health checks), smoke it, and re-deploy
    the previous image if the smoke test fails. Records the outcome in the ledger."""
    check_inputs(env, image, commit)
    before = previous or current_image(env)
    base = {"env": env.name, "app": env.app, "commit": commit, "image": image}
    say(f"deploying {image} to {env.app} (previous: {before or 'none'})")
    try:
        fly_deploy(env, image, commit)
    except DeployError as exc:
        record({**base, "result": "deploy-failed", "reason": str(exc)})
        raise DeployError(
            f"{exc}; Fly's blue-green deploy keeps the previous machines serving"
        ) from None
    say(f"smoke testing {env.url}")
    try:
        result = smoke(env)
    except SmokeFailed as exc:
        rolled = _roll_back(env, before, commit, smoke, say)
        record({**base, "result": "failed", "reason": str(exc), "rolled_back_to": before})
        raise DeployError(f"smoke test of {env.name} failed: {exc}; {rolled}") from None
    record({**base, "result": "passed", "quest_id": str(result.quest_id)})
    say(f"{env.name} passed its smoke test in {result.seconds:.1f}s (quest {result.quest_id})")
    return DeployOutcome(env.name, image, commit, result, before)


def _roll_back(
    env: Environment, before: str | None, commit: str, smoke: Smoke, say: Callable[[str], None]
) -> str:
    if not before:
        return "no previous image to roll back to"
    say(f"rolling {env.app} back to {before}")
    try:
        fly_deploy(env, before, f"rollback-from-{commit}")
    except DeployError as exc:
        return f"ROLLBACK FAILED: {exc}"
    try:
        smoke(env)
    except SmokeFailed as exc:
        return f"rolled back to {before}, which ALSO fails its smoke test: {exc}"
    return f"rolled back to {before}"


def promote(
    commit: str,
    smoke: Smoke,
    *,
    image: str | None = None,
    url: str | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> DeployOutcome:
    """Deploy to production the image that passed staging for ``commit``; refuse anything
    else (no pass recorded, a failed last attempt, another image)."""
    passed = staging_pass(commit)
    approved = str(passed["image"])
    if image is not None and image != approved:
        raise DeployError(
            f"{image} is not the image that passed staging for {commit} ({approved}): refused"
        )
    if not DIGEST.search(approved):
        raise DeployError(f"the staging image {approved} is not pinned by digest: refused")
    say(f"commit {commit} passed staging at {passed.get('at')} with {approved}")
    return deploy(environment("production", url=url), approved, commit, smoke, say=say)


def git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as an operator runs it
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        raise DeployError(
            "cannot tell the commit (git rev-parse HEAD failed): pass --commit"
        ) from None


def describe(records: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{e.get('at')} {e.get('env'):<10} {e.get('result'):<13} {e.get('commit', '')[:12]} "
        f"{e.get('image')}"
        for e in records
    ]
