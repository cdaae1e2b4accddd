"""Run the sandbox as a separate process (for the demo and the benchmarks)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


class SandboxProcess:
    """`python -m tap_clevertap.sandbox` on a free loopback port; `url` once it listens."""

    def __init__(self, *args: str) -> None:
        """Start the sandbox with extra command-line `args`; wait until it listens."""
        self._dir = tempfile.TemporaryDirectory()
        port_file = Path(self._dir.name) / "port"
        self.proc = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "tap_clevertap.sandbox",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                *args,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the CleverTap sandbox did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"

    def stop(self) -> None:
        """Terminate the sandbox process."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._dir.cleanup()

    def __enter__(self) -> SandboxProcess:
        """The running sandbox."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the sandbox."""
        self.stop()
