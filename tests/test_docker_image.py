"""The Airbyte connector image, without Docker: the Dockerfile's steps replayed in a fresh
virtual environment, then its entrypoint run from there against the sandbox."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tap_clevertap.sandbox import SandboxServer
from tests.helpers import REPO, capture_output, make_config

DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each line of the Dockerfile, comments left out."""
    steps = []
    for line in DOCKERFILE.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


def labels() -> dict[str, str]:
    return {
        key: value
        for keyword, rest in instructions()
        if keyword == "LABEL"
        for key, value in [rest.split("=", 1)]
        for value in [value.strip('"')]
    }


def test_version_agrees_in_pyproject_changelog_and_image_label() -> None:
    version = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    heading = re.search(r"^## \[([^\]]+)\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert heading is not None
    assert labels()["io.airbyte.version"] == version.group(1) == heading.group(1)
    assert labels()["io.airbyte.name"] == "airbyte/source-clevertap"


def test_the_image_is_built_the_way_airbyte_expects() -> None:
    steps = dict(instructions())
    assert steps["ENTRYPOINT"] == '["source-clevertap"]'
    assert steps["ENV"] == 'AIRBYTE_ENTRYPOINT="source-clevertap"'
    assert steps["FROM"].startswith("python:3.")


@pytest.mark.slow
def test_replaying_the_dockerfile_gives_a_working_source(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    image = tmp_path / "image"
    workdir = image
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    entrypoint: list[str] = []
    for keyword, rest in instructions():
        if keyword == "WORKDIR":
            workdir = image / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = shlex.split(rest)
            target = workdir / destination
            for source in sources:
                path = REPO / source
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, target / path.name)
        elif keyword == "RUN":
            command = shlex.split(rest)
            assert command[0] == "pip", "only pip steps can be replayed"
            result = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", *command[1:]],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert result.returncode == 0, result.stderr[-3000:]
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
    assert entrypoint
    binary = str(venv / "bin" / entrypoint[0])
    spec = subprocess.run([binary, "spec"], capture_output=True, text=True, check=True)
    assert json.loads(spec.stdout)["type"] == "SPEC"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(make_config(sandbox)))
    check = subprocess.run(
        [binary, "check", "--config", str(config)], capture_output=True, text=True, check=True
    )
    capture_output(check.stdout + check.stderr)
    status = json.loads(check.stdout.splitlines()[-1])
    assert status["connectionStatus"]["status"] == "SUCCEEDED"
