"""Stop the tap with SIGTERM/SIGINT at random records, many times: every run must exit 128+n.

`python scripts/stop_soak.py --runs 100 --workers 4` runs the tap as a subprocess against the
sandbox (pages slowed so that it is still reading), sends the signal when a random RECORD
line is read, and prints how the runs ended. A run that exits otherwise, or whose log holds a
traceback or an "Exception ignored", is printed with the end of its log. Exit status 1 if any.

Rare races (a signal landing inside a lock's wait, or in a weakref callback) show up only
over hundreds of runs, which is too long for the test suite; tests/test_signals.py covers
each mechanism directly.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import queue
import random
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tap_clevertap.sandbox import SandboxServer
from tests.helpers import make_config, spawn


def one_run(config: dict[str, Any], signum: int, at_record: int, work: Path) -> tuple[int, str]:
    """Exit code and log of a run stopped at its `at_record`-th RECORD line."""
    run = spawn(config, work)
    proc = run.proc
    assert proc.stdout is not None
    records = 0
    for line in proc.stdout:
        if line.startswith('{"type":"RECORD"'):
            records += 1
            if records == at_record:
                proc.send_signal(signum)
    proc.wait()
    proc.stdout.close()
    return proc.returncode, run.log.read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    plan = [
        (rng.choice([signal.SIGTERM, signal.SIGINT]), rng.randint(1, 500)) for _ in range(args.runs)
    ]
    endings: collections.Counter[str] = collections.Counter()
    bad = 0
    # One sandbox (one CleverTap account, 3 requests at a time) per run at a time.
    sandboxes: queue.Queue[dict[str, Any]] = queue.Queue()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for _ in range(args.workers):
            sandbox = stack.enter_context(SandboxServer())
            sandbox.settings.page_delay = 0.01
            sandboxes.put(make_config(sandbox, batch_size=10))

        def run(number: int) -> tuple[int, int, int, str]:
            signum, at = plan[number]
            config = sandboxes.get()
            try:
                run_dir = work / f"run-{number}"
                run_dir.mkdir()
                code, log = one_run(config, signum, at, run_dir)
            finally:
                sandboxes.put(config)
            return signum, at, code, log

        with ThreadPoolExecutor(args.workers) as pool:
            for signum, at, code, log in pool.map(run, range(args.runs)):
                name = signal.Signals(signum).name
                endings[f"{name} exit {code}"] += 1
                if code != 128 + signum or "Traceback" in log or "Exception ignored" in log:
                    bad += 1
                    print(f"--- {name} at record {at}: exit {code}\n{log[-3000:]}")
    for ending, count in sorted(endings.items()):
        print(f"{ending}: {count}")
    print(f"{args.runs - bad} of {args.runs} runs stopped cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
