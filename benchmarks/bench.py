"""Benchmarks, printed and never asserted: `python benchmarks/bench.py`.

1. Throughput: the tap vs the ceiling (benchmarks/ceiling.py: requests + orjson, printing
   RECORD lines), alternately several times in one run, to /dev/null; plus the sandbox's
   fetch-and-parse-only rate, which must be above the ceiling (the sandbox is not the limit).
2. Memory: peak RSS of the tap process (its own ru_maxrss) for a large export.
3. Overlap: wall time with export preparation (code 2) and slow pages, max_concurrent_requests
   3 vs 1.
4. Airbyte: `source-clevertap read` against `tap-clevertap`, same records, both to /dev/null,
   alternating.
6. Counts: a backfill with and without `include_event_counts` (CleverTap's count of each
   event and day), alternating, at the sandbox's default latency; the count requests it adds.
5. Campaigns: a year of campaigns and their reports (the campaign family): requests per
   endpoint, and wall time with the defaults and with max_concurrent_requests 1, at the
   sandbox's default latency (none) and at 100 ms a request.
Machines are noisy: each figure is min/median/max over the repeats, ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tap_clevertap.sandbox.process import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent


def write_config(work: Path, name: str, **config: object) -> Path:
    path = work / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        subprocess.run(cmd, stdout=devnull, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run the biggest last.
    return wall, max(before, after) / 1024


def spread(values: list[float], unit: str = "") -> str:
    return (
        f"min {min(values):,.0f}{unit} / median {statistics.median(values):,.0f}{unit} / "
        f"max {max(values):,.0f}{unit}"
    )


def base_config(url: str, **extra: object) -> dict[str, object]:
    return {
        "account_id": "SANDBOX-ACCOUNT",
        "passcode": "sandbox-passcode",
        "api_url": url,
        **extra,
    }


ORDERS: dict[str, list[str]] = {"in ts order": [], "out of ts order": ["--unordered"]}


def throughput(work: Path, repeats: int, per_day: int, days: int, order: str) -> None:
    sandbox = SandboxProcess("--events-per-day", str(per_day), *ORDERS[order])
    try:
        end = f"2024-01-{days:02d}"
        config = write_config(
            work,
            "throughput",
            **base_config(
                sandbox.url, event_names=["App Launched"], start_date="2024-01-01", end_date=end
            ),
        )
        tap = [sys.executable, "-m", "tap_clevertap", "--config", str(config)]
        sequential = write_config(
            work,
            "throughput1",
            **base_config(
                sandbox.url,
                event_names=["App Launched"],
                start_date="2024-01-01",
                end_date=end,
                max_concurrent_requests=1,
            ),
        )
        tap1 = [sys.executable, "-m", "tap_clevertap", "--config", str(sequential)]
        ceiling = [sys.executable, str(ROOT / "benchmarks" / "ceiling.py"), "--config", str(config)]
        records = sum(
            1 for _ in subprocess.run(ceiling, capture_output=True, check=True).stdout.splitlines()
        )
        timed(ceiling + ["--parse-only"])  # warm the sandbox's page cache
        rates: dict[str, list[float]] = {
            "parse-only": [],
            "ceiling": [],
            "tap": [],
            "tap (1 req)": [],
        }
        ratios: list[float] = []
        ratios1: list[float] = []
        for _ in range(repeats):
            parse_wall, _ = timed(ceiling + ["--parse-only"])
            ceiling_wall, _ = timed(ceiling)
            tap_wall, _ = timed(tap)
            tap1_wall, _ = timed(tap1)
            rates["tap (1 req)"].append(records / tap1_wall)
            ratios1.append(ceiling_wall / tap1_wall)
            rates["parse-only"].append(records / parse_wall)
            rates["ceiling"].append(records / ceiling_wall)
            rates["tap"].append(records / tap_wall)
            ratios.append(ceiling_wall / tap_wall)
        print(
            f"\n[throughput] {records:,} records ({days} one-day windows), {order}, "
            f"{repeats} alternating repeats"
        )
        for name, values in rates.items():
            print(f"  {name:<11} records/s  {spread(values)}")
        for label, values in (("tap", ratios), ("tap (1 req)", ratios1)):
            print(
                f"  {label} / ceiling ratio  min {min(values):.2f} / median {statistics.median(values):.2f}"
                f" / max {max(values):.2f}"
            )
    finally:
        sandbox.stop()


def airbyte(work: Path, repeats: int, per_day: int, days: int) -> None:
    sandbox = SandboxProcess("--events-per-day", str(per_day))
    try:
        config = write_config(
            work,
            "airbyte",
            **base_config(
                sandbox.url,
                event_names=["App Launched"],
                start_date="2024-01-01",
                end_date=f"2024-01-{days:02d}",
            ),
        )
        stream = {
            "name": "app_launched",
            "json_schema": {},
            "supported_sync_modes": ["incremental"],
        }
        catalog = work / "configured_catalog.json"
        catalog.write_text(
            json.dumps(
                {
                    "streams": [
                        {
                            "stream": stream,
                            "sync_mode": "incremental",
                            "destination_sync_mode": "append",
                        }
                    ]
                }
            )
        )
        tap = [sys.executable, "-m", "tap_clevertap", "--config", str(config)]
        source = [sys.executable, "-m", "tap_clevertap.airbyte", "read", "--config", str(config)]
        source += ["--catalog", str(catalog)]
        # Counted from one run of the tap (which also warms the sandbox's page cache).
        out = subprocess.run(tap, capture_output=True, check=True).stdout
        records = sum(1 for line in out.splitlines() if line.startswith(b'{"type":"RECORD"'))
        walls: dict[str, list[float]] = {"tap-clevertap": [], "source-clevertap read": []}
        for _ in range(repeats):
            walls["tap-clevertap"].append(timed(tap)[0])
            walls["source-clevertap read"].append(timed(source)[0])
        print(f"\n[airbyte] {records:,} records, {repeats} alternating repeats, to /dev/null")
        for name, values in walls.items():
            print(f"  {name:<22} records/s  {spread([records / v for v in values])}")
        ratios = [
            t / a
            for t, a in zip(walls["tap-clevertap"], walls["source-clevertap read"], strict=True)
        ]
        print(
            f"  source / tap throughput  min {min(ratios):.2f} / median {statistics.median(ratios):.2f}"
            f" / max {max(ratios):.2f}"
        )
    finally:
        sandbox.stop()


PEAK_RSS_PROBE = """
import re, resource, subprocess, sys, time
start = time.perf_counter()
run = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
wall = time.perf_counter() - start
disk = re.findall(rb"used up to ([0-9.]+) MiB of disk", run.stderr)
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, float(disk[-1]) if disk else 0)
"""


def peak_rss(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, the tap's own peak RSS (MiB) and the spool's peak disk use (MiB), from a
    fresh wrapper process, so the figure is not the maximum over earlier children."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PROBE, *cmd], capture_output=True, text=True, check=True
    )
    wall, rss, disk = out.stdout.split()
    return float(wall), float(rss), float(disk)


def memory(work: Path, per_day: int, days: int) -> None:
    sandbox = SandboxProcess("--events-per-day", str(per_day))
    try:
        end = f"2024-01-{days:02d}"
        print(
            f"\n[memory] ~{per_day * days:,} records over {days} one-day windows, batch_size 5000"
        )
        warm = write_config(
            work,
            "memory-warm",
            **base_config(
                sandbox.url, event_names=["Charged"], start_date="2024-01-01", end_date=end
            ),
        )
        # The sandbox builds each day's events on first request: build them before timing.
        timed([sys.executable, str(ROOT / "benchmarks" / "ceiling.py"), "--config", str(warm)])
        for concurrency in (3, 1):
            config = write_config(
                work,
                f"memory{concurrency}",
                **base_config(
                    sandbox.url,
                    event_names=["Charged"],
                    start_date="2024-01-01",
                    end_date=end,
                    max_concurrent_requests=concurrency,
                ),
            )
            wall, rss, disk = peak_rss(
                [sys.executable, "-m", "tap_clevertap", "--config", str(config)]
            )
            print(
                f"  max_concurrent_requests={concurrency}: peak RSS of the tap {rss:.0f} MiB, "
                f"{wall:.0f} s, spool on disk up to {disk:.0f} MiB"
            )
    finally:
        sandbox.stop()


def post_count(url: str) -> int:
    """Step-1 POSTs the sandbox has answered so far (its request log)."""
    with urllib.request.urlopen(f"{url}/_sandbox/requests") as response:
        entries = json.load(response)["requests"]
    return sum(1 for entry in entries if entry["method"] == "POST")


def one_big_window(work: Path, records: int) -> None:
    """One one-day window of `records` events, in and out of ts order: one request each?"""
    print(f"\n[one big window] {records:,} records in one one-day window, batch_size 5000")
    walls: dict[str, float] = {}
    for order, flags in ORDERS.items():
        sandbox = SandboxProcess("--events-per-day", str(records), *flags)
        try:
            config = write_config(
                work,
                "bigwindow",
                **base_config(
                    sandbox.url,
                    event_names=["Charged"],
                    start_date="2024-01-01",
                    end_date="2024-01-01",
                ),
            )
            ceiling = [sys.executable, str(ROOT / "benchmarks" / "ceiling.py")]
            timed([*ceiling, "--config", str(config), "--parse-only"])  # build the day first
            before = post_count(sandbox.url)
            wall, rss, disk = peak_rss(
                [sys.executable, "-m", "tap_clevertap", "--config", str(config)]
            )
            walls[order] = wall
            print(
                f"  {order:<16} {records / wall:,.0f} records/s, peak RSS {rss:.0f} MiB, "
                f"spool on disk up to {disk:.0f} MiB, "
                f"step-1 POSTs {post_count(sandbox.url) - before}"
            )
        finally:
            sandbox.stop()
    ordered, unordered = walls["in ts order"], walls["out of ts order"]
    print(f"  throughput out of order / in order  {ordered / unordered:.2f}")


def concurrency_ratio(
    work: Path, repeats: int, title: str, sandbox_args: list[str], **config: object
) -> None:
    """Median wall time with the defaults over that with one request at a time."""
    sandbox = SandboxProcess(*sandbox_args)
    try:
        walls: dict[int, list[float]] = {1: [], 3: []}
        for _ in range(repeats):
            for concurrency in (1, 3):
                path = write_config(
                    work,
                    f"concurrency{concurrency}",
                    **base_config(
                        sandbox.url,
                        event_names=["App Launched", "Charged", "Product Viewed"],
                        start_date="2024-01-01",
                        batch_size=100,
                        max_concurrent_requests=concurrency,
                        **config,
                    ),
                )
                wall, _ = timed([sys.executable, "-m", "tap_clevertap", "--config", str(path)])
                walls[concurrency].append(wall)
        ratios = [a / b for a, b in zip(walls[3], walls[1], strict=True)]
        print(f"\n{title}")
        for concurrency, values in walls.items():
            print(f"  max_concurrent_requests={concurrency}: wall {spread(values, ' s')}")
        print(
            f"  wall ratio (3 / 1)     min {min(ratios):.2f} / median {statistics.median(ratios):.2f}"
            f" / max {max(ratios):.2f}"
        )
    finally:
        sandbox.stop()


def overlap(work: Path, repeats: int, order: str) -> None:
    """Export preparation (code 2) and slow pages, overlapped."""
    concurrency_ratio(
        work,
        repeats,
        "[overlap] 3 streams x 7 one-day windows, 2 s export preparation, 50 ms per page, " + order,
        ["--events-per-day", "300", "--prepare-seconds", "2", "--page-delay", "0.05"]
        + ORDERS[order],
        end_date="2024-01-07",
        export_poll_seconds=0.25,
    )


def page_latency(work: Path, repeats: int, order: str) -> None:
    """Page latency, not preparation or CPU, sets the pace of a backfill (default polling)."""
    concurrency_ratio(
        work,
        repeats,
        "[page latency] 3 events x 2 one-day windows, 3,000 records a day, batch_size 100 "
        f"(30 pages an export), 400 ms a page, 0.5 s preparation, {order}",
        ["--events-per-day", "3000", "--prepare-seconds", "0.5", "--page-delay", "0.4"]
        + ORDERS[order],
        end_date="2024-01-02",
    )


def requests_by_path(url: str) -> dict[str, int]:
    """Requests the sandbox has answered so far, per path."""
    with urllib.request.urlopen(f"{url}/_sandbox/requests") as response:
        entries = json.load(response)["requests"]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["path"]] = counts.get(entry["path"], 0) + 1
    return counts


def campaigns(work: Path, repeats: int) -> None:
    """A year of campaigns: list windows x result requests, 3 at a time vs 1."""
    first = (time.gmtime().tm_year - 1, time.gmtime().tm_mon, min(time.gmtime().tm_mday, 28))
    start = f"{first[0]}-{first[1]:02d}-{first[2]:02d}"
    for latency in (0.0, 0.1):
        sandbox = SandboxProcess("--messaging-delay", str(latency))
        try:
            walls: dict[int, list[float]] = {1: [], 3: []}
            counts: dict[str, int] = {}
            for _ in range(repeats):
                for concurrency in (3, 1):
                    path = write_config(
                        work,
                        "campaigns",
                        **base_config(
                            sandbox.url,
                            event_names=["Charged"],
                            start_date=start,
                            end_date=start,
                            include_campaign_streams=True,
                            campaign_lookahead_days=0,
                            max_concurrent_requests=concurrency,
                        ),
                    )
                    before = requests_by_path(sandbox.url)
                    wall, _ = timed([sys.executable, "-m", "tap_clevertap", "--config", str(path)])
                    walls[concurrency].append(wall)
                    after = requests_by_path(sandbox.url)
                    counts = {p: after[p] - before.get(p, 0) for p in after}
            print(
                f"\n[campaigns] a year of campaigns from {start}, {latency * 1000:.0f} ms a request"
            )
            for name, count in sorted(counts.items()):
                print(f"  {name:<26} {count:>5} requests a run")
            for concurrency, values in walls.items():
                print(
                    f"  max_concurrent_requests={concurrency}: wall min {min(values):.2f} s / "
                    f"median {statistics.median(values):.2f} s / max {max(values):.2f} s"
                )
            ratios = [a / b for a, b in zip(walls[3], walls[1], strict=True)]
            print(
                f"  wall ratio (3 / 1)     min {min(ratios):.2f} / median "
                f"{statistics.median(ratios):.2f} / max {max(ratios):.2f}"
            )
        finally:
            sandbox.stop()


def counts(work: Path, repeats: int, per_day: int) -> None:
    """The cost of event_counts: wall time with it over without, and its requests."""
    sandbox = SandboxProcess("--events-per-day", str(per_day))
    try:
        walls: dict[bool, list[float]] = {False: [], True: []}
        added: dict[str, int] = {}
        for _ in range(repeats):
            for with_counts in (False, True):
                path = write_config(
                    work,
                    "counts",
                    **base_config(
                        sandbox.url,
                        event_names=["App Launched", "Charged", "Product Viewed"],
                        start_date="2024-01-01",
                        end_date="2024-01-07",
                        include_event_counts=with_counts,
                    ),
                )
                before = requests_by_path(sandbox.url)
                wall, _ = timed([sys.executable, "-m", "tap_clevertap", "--config", str(path)])
                walls[with_counts].append(wall)
                if with_counts:
                    after = requests_by_path(sandbox.url)
                    added = {"/1/counts/events.json": after.get("/1/counts/events.json", 0)}
                    added["/1/counts/events.json"] -= before.get("/1/counts/events.json", 0)
        ratios = [a / b for a, b in zip(walls[True], walls[False], strict=True)]
        print(
            f"\n[counts] 3 events x 7 one-day windows, {per_day:,} events a day, "
            "default sandbox latency"
        )
        for with_counts, values in walls.items():
            label = "with event_counts" if with_counts else "without"
            print(
                f"  {label:<18} wall min {min(values):.2f} s / median "
                f"{statistics.median(values):.2f} s / max {max(values):.2f} s"
            )
        print(
            f"  count requests a run {added.get('/1/counts/events.json', 0)} "
            "(one per event and window day; no partial answers)"
        )
        print(
            f"  wall ratio (with / without)  min {min(ratios):.3f} / median "
            f"{statistics.median(ratios):.3f} / max {max(ratios):.3f}"
        )
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--records-per-day", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--memory-records-per-day", type=int, default=100_000)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=[
            "throughput",
            "memory",
            "overlap",
            "airbyte",
            "latency",
            "bigwindow",
            "campaigns",
            "counts",
        ],
    )
    parser.add_argument("--big-window-records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "throughput" not in args.skip:
            for order in ORDERS:
                throughput(work, args.repeats, args.records_per_day, args.days, order)
        if "airbyte" not in args.skip:
            airbyte(work, args.repeats, args.records_per_day, args.days)
        if "latency" not in args.skip:
            for order in ORDERS:
                page_latency(work, max(1, args.repeats // 2), order)
        if "overlap" not in args.skip:
            for order in ORDERS:
                overlap(work, max(1, args.repeats // 2), order)
        if "memory" not in args.skip:
            memory(work, args.memory_records_per_day, args.days)
        if "bigwindow" not in args.skip:
            one_big_window(work, args.big_window_records)
        if "campaigns" not in args.skip:
            campaigns(work, max(1, args.repeats // 2))
        if "counts" not in args.skip:
            counts(work, args.repeats, 5000)


if __name__ == "__main__":
    main()
