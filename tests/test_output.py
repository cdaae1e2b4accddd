"""The Singer output: RECORD lines as bytes (or text when stdout was replaced), and a target
that stops reading ends the run with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tap_clevertap import output
from tap_clevertap.sandbox import SandboxServer
from tests.helpers import capture_output, make_config, run_tap, spawn


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


def test_in_process_runs_write_record_lines_as_bytes_or_as_text_alike(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run_tap's stdout has a byte layer (as a process's has): RECORD lines go to it. A
    # program that replaced stdout by a text stream gets the same lines as text.
    writes: list[str] = []
    write_bytes = output.write_bytes

    def spy(data: bytes) -> None:
        writes.append("bytes" if getattr(sys.stdout, "buffer", None) is not None else "text")
        write_bytes(data)

    monkeypatch.setattr(output, "write_bytes", spy)
    config = make_config(sandbox, event_names=["Añadir al carrito"], end_date="2024-01-02")
    as_bytes = run_tap(config)
    assert set(writes) == {"bytes"}
    writes.clear()
    as_text = run_tap(config, text_stdout=True)
    assert set(writes) == {"text"}
    assert as_bytes.records() == as_text.records()
    assert len(as_bytes.records()) > 20
    assert any(not r["event_name"].isascii() for r in as_bytes.records())
