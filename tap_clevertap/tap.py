"""tap-clevertap: CleverTap user events as Singer streams, one per event name."""

from __future__ import annotations

import gc
import os
import sys
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from typing_extensions import override

from tap_clevertap.config import CONFIG_SCHEMA, config_problems
from tap_clevertap.errors import CleverTapError
from tap_clevertap.exports import ExportScheduler, Plan
from tap_clevertap.output import SingerOutput
from tap_clevertap.streams import EventStream
from tap_clevertap.windows import today_in

if TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum

# New containers (net of those freed) between collections of the youngest generation.
YOUNG_GC_THRESHOLD = 100_000


class TapClevertap(Tap):
    """Exports CleverTap events (Get Events API) incrementally, one stream per event name."""

    # (The docstring above is the tap's description in `--about`.) The streams share three
    # collaborators, made here and handed to each stream: the request slots (CleverTap allows
    # 3 requests in flight per account), the export scheduler (exports opened ahead across
    # streams) and the Singer output (`SingerOutput`, this tap's message writer).

    name = "tap-clevertap"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = SingerOutput
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def __init__(self, **kwargs: Any) -> None:
        """The SDK's Tap, whose SIGTERM/SIGINT write STATE (whole windows) and exit non-zero.

        Args:
            kwargs: The SDK's `Tap` arguments (config, catalog, state, ...).
        """
        super().__init__(**kwargs)
        self.output.stop_on_signals(self._stop)

    @cached_property
    def output(self) -> SingerOutput:
        """Where every Singer message goes (the SDK's `message_writer`)."""
        writer = self.message_writer
        if not isinstance(writer, SingerOutput):
            raise TypeError(f"tap-clevertap writes through SingerOutput, not {writer!r}")
        return writer

    @cached_property
    def request_slots(self) -> threading.BoundedSemaphore:
        """HTTP requests in flight across all streams (CleverTap allows 3 per account)."""
        return threading.BoundedSemaphore(self.config["max_concurrent_requests"])

    @cached_property
    def exports(self) -> ExportScheduler:
        """Opens the exports of every selected stream ahead, in the order they are read."""
        return ExportScheduler(
            max_concurrent_requests=self.config["max_concurrent_requests"],
            max_exports_ahead=self.config["max_exports_ahead"],
            planner=self._planned_exports,
        )

    def _planned_exports(self) -> Plan:
        # Streams are synced in the order of `self.streams`; state is loaded by now.
        today = today_in(self.config["timezone"])
        return [
            export
            for stream in self.streams.values()
            if isinstance(stream, EventStream) and stream.selected
            for export in stream.planned_exports(today)
        ]

    @override
    def discover_streams(self) -> list[EventStream]:
        return [
            EventStream(
                self,
                name,
                request_slots=self.request_slots,
                exports=self.exports,
                output=self.output,
                write_state=self.state_writer.write_state,
            )
            for name in self.config.get("event_names") or []
        ]

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The schema's checks (the SDK's), then those that need the whole config.

        Private SDK method, the only point before the streams are built: the SDK builds them
        (discovery) while it is still constructing the tap. Pinned by tests/test_sdk_contract.py.
        """
        try:
            errors = super()._validate_config(raise_errors=raise_errors)
        except ConfigValidationError as exc:
            errors = list(exc.errors)
        errors += config_problems(self.config)
        passcode = self.config.get("passcode")
        if passcode not in (None, ""):
            # jsonschema messages quote the value ("123 is not of type 'string'").
            errors = [error.replace(str(passcode), "***") for error in errors]
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=self.config_jsonschema
            )
        return errors

    @classmethod
    @override
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
        """The command line: a sync, ending known failures with one line and exit code 1."""
        # A sync allocates objects by the million (parsed pages), so the cyclic garbage
        # collector runs often, and each full pass walks every object the imports created.
        # Those live as long as the process: frozen, collections skip them (~10% of a run).
        gc.freeze()
        # A parsed page of 5,000 events is a tree of 25,000-40,000 containers, which reference
        # counting frees once the page is written. At the default threshold (700 new
        # containers) the collector scans it piece by piece while it is parsed, finding
        # nothing, and moves it to older generations that full collections scan again. Above
        # a page's worth, a page is usually freed before any collection sees it.
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        try:
            super().invoke(*args, **kwargs)
        except CleverTapError as exc:
            # One line saying what happened and what to do; no traceback for known failures.
            cls.logger.error("%s", exc.one_line())  # noqa: TRY400
            sys.exit(1)
        except BrokenPipeError:
            cls.logger.error(  # noqa: TRY400
                "the target stopped reading the tap's output (broken pipe): see the target's "
                "own log for why; the last STATE it received resumes without loss"
            )
            # Python would flush stdout again on the way out and fail on the closed pipe.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)

    def _stop(self, signum: int) -> None:
        """SIGTERM/SIGINT: write the state earned so far (whole windows only), exit non-zero.

        A non-zero exit (128 + signal), so that an orchestrator does not take the run for a
        success.
        """
        self.logger.warning(
            "Stopped by signal %d; the last STATE covers whole windows only", signum
        )
        try:
            self.state_writer.write_state(self.state)
        finally:
            sys.exit(128 + signum)
