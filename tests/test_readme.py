"""The README is the operator's reference: every setting and every command is in it."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
from pydantic import AliasChoices

from runtime.settings import Settings
from system2.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def env_names(name: str) -> list[str]:
    if name == "integrations":  # one set of variables per provider (integrations.config)
        return ["S2_<NAME>_PROVIDER_URL"]
    field = Settings.model_fields[name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    return [f"S2_{name.upper()}"]


def test_every_setting_is_documented() -> None:
    missing = [
        name
        for name in Settings.model_fields
        if not any(f"`{env}`" in README for env in env_names(name))
    ]
    assert not missing, f"settings missing from the README's configuration table: {missing}"


def test_every_command_group_is_documented() -> None:
    group = typer.main.get_command(app)
    names = sorted(group.commands)  # type: ignore[attr-defined]
    assert len(names) > 10
    missing = [n for n in names if not re.search(rf"`system2 {re.escape(n)}\b", README)]
    assert not missing, f"commands missing from the README: {missing}"
