"""Set-up contracts: the lock, setup.py, the bootstrap, CI and the README agree."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from setuptools import find_packages

REPO_ROOT = Path(__file__).resolve().parents[1]
README_TEST_COMMAND = "bash scripts/bootstrap.sh && .venv/bin/python -m pytest"
README_MAIN_COMMAND = "bash scripts/bootstrap.sh && .venv/bin/vocalsep demo"


def _lock_pins() -> dict[str, Version]:
    """The lock's pins that apply to this Python (a pin may carry a marker: tests/test_lock.py
    checks the lock on every Python we promise)."""
    pins: dict[str, Version] = {}
    for line in (REPO_ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"requirements.lock: not an exact pin: {line!r}"
        key = canonicalize_name(requirement.name)
        assert key not in pins, f"requirements.lock: {requirement.name} pinned twice"
        if requirement.marker is None or requirement.marker.evaluate():
            pins[key] = Version(specifier.version)
    return pins


def _setup_requirements() -> list[Requirement]:
    source = (REPO_ROOT / "setup.py").read_text()
    block = re.search(r"install_requires=\[(.*?)\]", source, re.S).group(1)
    return [Requirement(spec) for spec in re.findall(r'"([^"]+)"', block)]


def test_packages_live_under_vocalsep_only() -> None:
    packages = find_packages(where=str(REPO_ROOT), include=["vocalsep", "vocalsep.*"])
    for room in ("pipeline", "components", "transforms", "serving", "audio", "model"):
        assert f"vocalsep.{room}" in packages
    top_level = {
        path.name
        for path in REPO_ROOT.iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    assert top_level == {"vocalsep"}, "only vocalsep/ may land at the top of site-packages"


def test_every_direct_requirement_is_pinned_and_satisfied_by_the_lock() -> None:
    pins = _lock_pins()
    direct = _setup_requirements() + [
        Requirement(line.split("#")[0].strip())
        for line in (REPO_ROOT / "requirements.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    for requirement in direct:
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{requirement.name} is required but not in requirements.lock"
        assert requirement.specifier.contains(pins[key], prereleases=True), (
            f"{requirement} is not satisfied by the locked {pins[key]}"
        )


def test_installed_environment_matches_the_lock() -> None:
    pins = _lock_pins()
    drift = []
    for name, version in pins.items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            drift.append(f"{name}: locked {version}, not installed")
            continue
        if installed != version:
            drift.append(f"{name}: locked {version}, installed {installed}")
    assert not drift, "environment differs from requirements.lock:\n" + "\n".join(drift)


def test_ci_runs_the_readme_test_command_with_the_services_it_needs() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    commands = [
        line.split("#")[0].strip()
        for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert commands[:2] == [README_MAIN_COMMAND, README_TEST_COMMAND]
    ci_lines = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    bootstrap, pytest_command = README_TEST_COMMAND.split(" && ")
    # The README's command, its two halves around the services: first the bootstrap, last the
    # suite (with the container tests required, since CI built the image in between).
    assert ci_lines[0] == bootstrap
    assert ci_lines[-1] == f"VOCALSEP_CONTAINER_TESTS=1 {pytest_command}"
    assert "make --no-print-directory image" in ci_lines
    # A Docker daemon CI starts is stopped again, whatever the suite's outcome.
    assert "trap stop_dockerd EXIT" in ci_lines
    assert any(line.startswith("dockerd --bridge=none --iptables=false") for line in ci_lines)


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve(),
    reason="runs only inside the bootstrap's own .venv",
)
def test_second_bootstrap_is_a_no_op() -> None:
    result = subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert "installing" not in result.stderr


def test_pip_check_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
