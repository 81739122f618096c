"""constraints/*.txt pin every dependency pyproject.toml asks for, so a green run can be reinstalled."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pinned(environment: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints" / f"{environment}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def required(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


@pytest.mark.parametrize(("environment", "extras"), [("test", ("test",)), ("demo", ())])
def test_every_requirement_is_pinned_at_a_version_it_allows(
    environment: str, extras: tuple[str, ...]
) -> None:
    pins = pinned(environment)
    unpinned = [str(r) for r in required(extras) if canonicalize_name(r.name) not in pins]
    disallowed = [
        f"{r.name}=={pins[canonicalize_name(r.name)]} (wants {r.specifier})"
        for r in required(extras)
        if canonicalize_name(r.name) in pins and not r.specifier.contains(pins[canonicalize_name(r.name)])
    ]
    assert (unpinned, disallowed) == ([], []), "run `python3 tasks.py lock`"


def test_the_demo_environment_has_no_test_tools() -> None:
    assert {"pytest", "mypy", "ruff", "hypothesis"}.isdisjoint(pinned("demo"))
