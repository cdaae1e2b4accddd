"""Run the CleverTap sandbox: `python -m tap_clevertap.sandbox --port 8765`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tap_clevertap.sandbox.dataset import SandboxData
from tap_clevertap.sandbox.server import SandboxServer, SandboxSettings


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(description="Local simulator of CleverTap's read APIs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the chosen port here once ready")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events-per-day", type=int, default=40)
    parser.add_argument("--timezone", default="UTC", help="the simulated account's time zone")
    parser.add_argument("--prepare-seconds", type=float, default=0.0)
    parser.add_argument("--page-delay", type=float, default=0.0)
    parser.add_argument("--max-concurrent", type=int, default=3)
    parser.add_argument("--unordered", action="store_true", help="serve events out of ts order")
    parser.add_argument(
        "--messaging-delay",
        type=float,
        default=0.0,
        help="seconds to serve each campaign, report, content block or category group request",
    )
    args = parser.parse_args(argv)

    server = SandboxServer(
        SandboxData(seed=args.seed, events_per_day=args.events_per_day, timezone=args.timezone),
        SandboxSettings(
            prepare_seconds=args.prepare_seconds,
            page_delay=args.page_delay,
            max_concurrent=args.max_concurrent,
            unordered=args.unordered,
            messaging_delay=args.messaging_delay,
        ),
        host=args.host,
        port=args.port,
    )
    print(f"CleverTap sandbox listening on {server.url}", flush=True)
    if args.port_file:
        args.port_file.write_text(server.url.rsplit(":", 1)[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
