"""The smoke test against a locally running stack; deploy with smoke-test rollback and promote,
driven through a stand-in `fly` executable (Fly.io is an internet service) that "deploys" by
switching the local stack between a working release and a broken one."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runtime.settings import Settings
from system2 import cli
from system2.dev_tokens import mint
from system2.errors import System2Error
from system2.ops.release import DeployError
from tests.conftest import JWT_SECRET, Stack, Tenant, running_stack, settings_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
GOOD = "registry.fly.io/system2-staging@sha256:" + "a" * 64
NEW = "registry.fly.io/system2-staging@sha256:" + "b" * 64
BROKEN = "registry.fly.io/system2-staging@sha256:" + "c" * 64

# Records its arguments; `image show` answers the app's current image; `deploy --image X`
# makes X current, and "runs" it: a broken image stops the workers (SIGSTOP, so quests wait
# and the smoke test times out), any other resumes them.
STAND_IN_FLY = """#!{python}
import json, os, signal, sys
args = sys.argv[1:]
with open(os.environ["FAKE_FLY_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
state_path = os.environ["FAKE_FLY_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {{}}
app = args[args.index("--app") + 1]
if args[:2] == ["image", "show"]:
    image = state.get(app, os.environ["FAKE_FLY_RUNNING"])
    repo, digest = image.split("@")
    registry, repository = repo.split("/", 1)
    print(json.dumps([{{"Registry": registry, "Repository": repository, "Tag": "deployment-x",
                       "Digest": digest}}]))
elif args[0] == "deploy":
    image = args[args.index("--image") + 1]
    if image in os.environ.get("FAKE_FLY_REFUSE", "").split(","):
        print("Error: release command failed: migrate exited 1", file=sys.stderr)
        sys.exit(1)
    stop = image in os.environ.get("FAKE_FLY_BROKEN", "").split(",")
    pgid = os.environ.get("FAKE_FLY_WORKERS_PGID")
    if pgid:
        os.killpg(int(pgid), signal.SIGSTOP if stop else signal.SIGCONT)
    state[app] = image
    json.dump(state, open(state_path, "w"))
else:
    print("stand-in fly: unexpected " + " ".join(args), file=sys.stderr)
    sys.exit(2)
"""


def script(
    settings: Settings, name: str, *args: str, timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "deploy" / name), *args],
        env=settings_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    return last


@pytest.fixture(scope="module")
def live(
    settings: Settings, offline_claude: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Workers and an ingress for the whole module (starting them costs seconds)."""
    with running_stack(settings, offline_claude, tmp_path_factory.mktemp("release")) as stack:
        stack.start_workers(processes=1)
        stack.start_ingress()
        yield stack


def test_smoke_passes_against_a_running_stack(
    live: Stack, settings: Settings, tenant: Tenant
) -> None:
    done = script(
        settings,
        "smoke",
        "--url",
        live.ingress_url,
        "--company",
        str(tenant.id),
        "--token",
        tenant.token(tenant.member),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("smoke ok: quest ")
    assert "succeeded via " + live.ingress_url in done.stderr


def test_smoke_fails_with_one_readable_line(
    live: Stack, settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    nowhere = f"http://127.0.0.1:{_closed_port()}"
    line = one_line_error(
        script(settings, "smoke", "--url", nowhere, "--company", str(tenant.id), "--token", "x")
    )
    assert line == f"error: cannot reach {nowhere}/healthz: ConnectError"

    stranger = other_tenant.token(other_tenant.member)
    line = one_line_error(
        script(
            settings,
            "smoke",
            "--url",
            live.ingress_url,
            "--company",
            str(tenant.id),
            "--token",
            stranger,
        )
    )
    assert "the smoke user is not a member of company" in line and "(403)" in line
    # (A smoke quest that never runs is the broken release of the deploy test below.)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fly(tmp_path: Path, live: Stack, tenant: Tenant) -> Iterator[dict[str, str]]:
    """The environment of a deploy through the stand-in fly, smoke-testing the live stack."""
    binary = tmp_path / "fly"
    binary.write_text(STAND_IN_FLY.format(python=sys.executable))
    binary.chmod(0o755)
    yield {
        "FLY": str(binary),
        "FAKE_FLY_LOG": str(tmp_path / "fly-calls.jsonl"),
        "FAKE_FLY_STATE": str(tmp_path / "fly-state.json"),
        "FAKE_FLY_RUNNING": GOOD,
        "FAKE_FLY_BROKEN": BROKEN,
        "FAKE_FLY_WORKERS_PGID": str(live.procs["workers"].pid),
        "S2_RELEASE_LEDGER": str(tmp_path / "releases.jsonl"),
        "S2_SMOKE_COMPANY": str(tenant.id),
        "S2_SMOKE_USER": tenant.member,  # staging: a token is minted with S2_JWT_SECRET
    }
    live.procs["workers"].signal(signal.SIGCONT)  # whatever the test left stopped


def calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_FLY_LOG"])
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def ledger(env: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(env["S2_RELEASE_LEDGER"]).read_text().splitlines()]


def deployed_images(env: dict[str, str]) -> list[tuple[str, str]]:
    return [
        (c[c.index("--app") + 1], c[c.index("--image") + 1]) for c in calls(env) if c[0] == "deploy"
    ]


def test_deploy_smokes_records_and_rolls_back_and_promote_takes_only_what_passed(
    live: Stack, settings: Settings, fly: dict[str, str]
) -> None:
    url = live.ingress_url
    good, bad = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]

    # A good release: deployed blue-green with the commit, smoke-tested, recorded as passed.
    done = script(
        settings, "deploy", "staging", "--image", NEW, "--commit", good, "--url", url, **fly
    )
    assert done.returncode == 0, done.stderr
    assert "staging passed its smoke test" in done.stderr
    (show, deploy) = calls(fly)
    assert show == ["image", "show", "--app", "system2-staging", "--json"]
    assert deploy[:2] == ["deploy", "--config"] and deploy[2].endswith("deploy/fly/staging.toml")
    assert deploy[3:] == [
        "--app", "system2-staging", "--image", NEW, "--strategy", "bluegreen",
        "--env", f"S2_RELEASE={good}",
    ]  # fmt: skip
    assert [(e["env"], e["commit"], e["image"], e["result"]) for e in ledger(fly)] == [
        ("staging", good, NEW, "passed")
    ]

    # A broken release: its smoke quest never runs, so it is rolled back to the image before.
    done = script(
        settings, "deploy", "staging", "--image", BROKEN, "--commit", bad, "--url", url,
        "--smoke-timeout", "2", **fly,
    )  # fmt: skip
    line = one_line_error(done)
    assert line.startswith("error: smoke test of staging failed: smoke quest ")
    assert line.endswith(f"rolled back to {NEW}")
    assert deployed_images(fly)[-2:] == [("system2-staging", BROKEN), ("system2-staging", NEW)]
    last = ledger(fly)[-1]
    assert (last["commit"], last["result"], last["rolled_back_to"]) == (bad, "failed", NEW)

    # Promote refuses what did not pass staging, another image than the one that did, and —
    # before anything ships — a production smoke test it could not run.
    n = len(calls(fly))
    refused = one_line_error(script(settings, "promote", "--commit", good, "--url", url, **fly))
    assert "production smoke tests need S2_SMOKE_TOKEN" in refused
    fly["S2_SMOKE_TOKEN"] = mint(JWT_SECRET, fly.pop("S2_SMOKE_USER"))  # a Supabase session
    for args, reason in [
        (["--commit", bad], f"the last staging deploy of {bad}"),
        (["--commit", "f" * 40], "has no staging deploy in"),
        (["--commit", good, "--image", GOOD], f"is not the image that passed staging for {good}"),
    ]:  # in process: the same command the script runs, without an interpreter start each
        with pytest.raises(DeployError, match=re.escape(reason)):
            CliRunner().invoke(
                cli.app,
                ["ops", "promote", *args, "--url", url],
                env={**fly, "S2_FLY_DIR": str(ROOT / "deploy" / "fly")},
                catch_exceptions=False,
            )
    assert len(calls(fly)) == n  # nothing reached Fly

    # ...and ships exactly the image that passed, for that commit, to production.
    done = script(settings, "promote", "--commit", good, "--url", url, **fly)
    assert done.returncode == 0, done.stderr
    assert deployed_images(fly)[-1] == ("system2-production", NEW)
    last = ledger(fly)[-1]
    assert (last["env"], last["commit"], last["image"], last["result"]) == (
        "production", good, NEW, "passed",
    )  # fmt: skip


def test_deploy_refuses_tags_production_and_reports_a_failed_fly_deploy(
    settings: Settings, tmp_path: Path
) -> None:
    binary = tmp_path / "fly"
    binary.write_text(STAND_IN_FLY.format(python=sys.executable))
    binary.chmod(0o755)
    env = {
        "FLY": str(binary),
        "FAKE_FLY_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_FLY_STATE": str(tmp_path / "state.json"),
        "FAKE_FLY_RUNNING": GOOD,
        "FAKE_FLY_REFUSE": NEW,
        "FAKE_FLY_WORKERS_PGID": "",
        "S2_RELEASE_LEDGER": str(tmp_path / "releases.jsonl"),
        "S2_SMOKE_COMPANY": str(uuid.uuid4()),
        "S2_SMOKE_TOKEN": "unused",
    }
    tag = "registry.fly.io/system2-staging:latest"
    for env_name, image, reason in [
        ("staging", tag, "is not pinned by digest"),
        ("production", NEW, "production takes only `system2 ops promote --commit SHA`"),
    ]:
        with pytest.raises(
            DeployError if env_name == "staging" else System2Error, match=re.escape(reason)
        ):
            CliRunner().invoke(
                cli.app,
                ["ops", "deploy", env_name, "--image", image, "--commit", "abc1234"],
                env={**env, "S2_FLY_DIR": str(ROOT / "deploy" / "fly")},
                catch_exceptions=False,
            )
    assert calls(env) == []

    line = one_line_error(
        script(settings, "deploy", "staging", "--image", NEW, "--commit", "abc1234", **env)
    )
    assert "fly deploy failed (1): Error: release command failed: migrate exited 1" in line
    assert "keeps the previous machines serving" in line
    assert ledger(env)[-1]["result"] == "deploy-failed"
