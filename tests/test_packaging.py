"""Packaging: every imported module is declared, the lock file satisfies pyproject.toml, and
the version is read from one place."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions, requires, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tap_clevertap.tap import TapClevertap
from tests.helpers import REPO

LOCAL = {"tap_clevertap", "tests", "scripts", "benchmarks"}
# The installed metadata is pyproject.toml's (`make` reinstalls when pyproject.toml changes).
REQUIRES = [Requirement(line) for line in requires("tap-clevertap") or []]


def requirements(*, dev: bool) -> list[Requirement]:
    """The package's requirements (with `dev`: and the dev extra's), markers kept."""
    extras = ("", "dev") if dev else ("",)
    return [
        r
        for r in REQUIRES
        if r.marker is None
        or any(r.marker.evaluate({"extra": extra}) for extra in extras)
        or "extra" not in str(r.marker)
    ]


def imported_distributions(folder: str) -> set[str]:
    """The distributions providing the third-party modules imported under `folder`."""
    modules: set[str] = set()
    for path in (REPO / folder).rglob("*.py"):
        if "pyairbyte" in path.parts:  # run by PyAirbyte's own interpreter (.venv-airbyte)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - LOCAL - set(sys.stdlib_module_names) - {"__future__"}
    providers = packages_distributions()
    return {canonicalize_name(providers[module][0]) for module in third_party}


def declared(*, dev: bool) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements(dev=dev)}


def test_the_package_declares_every_module_it_imports() -> None:
    assert imported_distributions("tap_clevertap") <= declared(dev=False)
    # `backoff` comes from python-backoff, as singer-sdk's own dependency does.
    assert "python-backoff" in imported_distributions("tap_clevertap")


@pytest.mark.parametrize("folder", ["tests", "scripts", "benchmarks"])
def test_tests_scripts_and_benchmarks_declare_what_they_import(folder: str) -> None:
    assert imported_distributions(folder) <= declared(dev=True)


def test_the_lock_file_satisfies_pyproject() -> None:
    pins: dict[str, str] = {}
    for line in (REPO / "requirements" / "dev.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            spec = line.split(";")[0].strip()
            name, _, pinned = spec.partition("==")
            pins.setdefault(canonicalize_name(name.split("[")[0]), pinned)
    for requirement in requirements(dev=True):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": "dev"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements/dev.lock: regenerate it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_the_version_is_read_from_pyproject() -> None:
    literal = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert literal is not None
    assert version("tap-clevertap") == literal.group(1)
    assert TapClevertap.plugin_version == literal.group(1)
    assert not list(Path(REPO / "tap_clevertap").rglob("_version.py"))
