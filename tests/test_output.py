"""The Singer output: a target that stops reading ends the run with one line."""

from __future__ import annotations

from pathlib import Path

from tap_clevertap.sandbox import SandboxServer
from tests.conftest import capture_output, make_config, spawn


def test_a_target_that_stops_reading_ends_the_run_with_one_line(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.settings.page_delay = 0.01  # the run is still going when the target goes away
    run = spawn(make_config(sandbox), tmp_path)
    proc = run.proc
    assert proc.stdout is not None
    first = [proc.stdout.readline() for _ in range(5)]
    assert all('"type"' in line for line in first)
    proc.stdout.close()  # the target stops reading
    returncode = proc.wait(timeout=60)
    err = run.log.read_text()
    capture_output(err)
    assert returncode == 1
    assert "the target stopped reading the tap's output (broken pipe)" in err.splitlines()[-1]
    assert "Traceback" not in err
    assert "Exception ignored" not in err
