"""requirements.lock holds on every Python 3.11 we promise: Debian 12's own 3.11.2 and the
newest 3.11, whose dependency markers differ (redis needs async-timeout below 3.11.3)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PYTHONS = ("3.11.2", "3.11.12")
"""Debian 12's python3.11, and a late 3.11 release."""


def _pins() -> dict[str, Requirement]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def _environment(python: str) -> dict[str, str]:
    return {**default_environment(), "python_full_version": python, "python_version": "3.11"}


def _installed_for(python: str, pins: dict[str, Requirement]) -> dict[str, str]:
    """Each pin that pip installs on ``python``: name -> version."""
    environment = _environment(python)
    return {
        name: next(iter(requirement.specifier)).version
        for name, requirement in pins.items()
        if requirement.marker is None or requirement.marker.evaluate(environment)
    }


def test_every_pin_is_exact() -> None:
    for requirement in _pins().values():
        assert re.fullmatch(r"==[^,*]+", str(requirement.specifier)), requirement


@pytest.mark.parametrize("python", PYTHONS)
def test_every_requirement_of_every_pinned_package_is_pinned_on(python: str) -> None:
    """What `pip check` would say on that Python, from the packages' own metadata."""
    pins = _pins()
    installed = _installed_for(python, pins)
    environment = _environment(python)
    problems = []
    for name in installed:
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # pinned only for another Python than this test's: its own deps are few
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate(
                {**environment, "extra": ""}
            ):
                continue
            wanted = canonicalize_name(requirement.name)
            if wanted not in installed:
                problems.append(f"{name} requires {requirement}, which is not installed")
            elif installed[wanted] not in requirement.specifier:
                problems.append(f"{name} requires {requirement}, the lock has {installed[wanted]}")
    assert not problems, "\n".join(problems)


def test_the_marker_the_older_python_needs_is_in_the_lock() -> None:
    installed_old, installed_new = (_installed_for(python, _pins()) for python in PYTHONS)
    assert "async-timeout" in installed_old
    assert "async-timeout" not in installed_new
