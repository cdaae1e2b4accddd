"""tap-clevertap: CleverTap user events as Singer streams, one per event name."""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from decimal import Decimal
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities

from tap_clevertap.client import CleverTapError
from tap_clevertap.config import CONFIG_SCHEMA, config_problems
from tap_clevertap.exports import ExportScheduler
from tap_clevertap.streams import EventStream
from tap_clevertap.windows import today_in

# New containers (net of those freed) between collections of the youngest generation.
YOUNG_GC_THRESHOLD = 100_000

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from singer_sdk.helpers.capabilities import CapabilitiesEnum


class TapClevertap(Tap):
    """Exports CleverTap events (Get Events API) incrementally, one stream per event name."""

    name = "tap-clevertap"
    config_jsonschema = CONFIG_SCHEMA
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    def discover_streams(self) -> list[EventStream]:
        return [EventStream(self, name) for name in self.config.get("event_names") or []]

    @cached_property
    def request_slots(self) -> threading.BoundedSemaphore:
        """HTTP requests in flight across all streams (CleverTap allows 3 per account)."""
        return threading.BoundedSemaphore(self.config["max_concurrent_requests"])

    @cached_property
    def exports(self) -> ExportScheduler:
        """Every window of every selected stream, in the order the SDK syncs them, so that
        exports are opened ahead across stream boundaries too."""
        scheduler = ExportScheduler(
            max_concurrent_requests=self.config["max_concurrent_requests"],
            max_exports_ahead=self.config["max_exports_ahead"],
        )
        today = today_in(self.config["timezone"])
        for stream in self.streams.values():
            if isinstance(stream, EventStream) and stream.selected:
                for window in stream.plan(today):
                    context = stream.export_context(window)
                    opener = partial(stream.open_export_ahead, context)
                    scheduler.plan(stream.export_key(window), opener)
        return scheduler

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK does not apply the schema's defaults; apply them once, here, before any
        # stream reads the config.
        for key, prop in CONFIG_SCHEMA["properties"].items():
            if "default" in prop:
                self._config.setdefault(key, prop["default"])
            # The SDK reads config files with floats as Decimal, which time.sleep refuses.
            if isinstance(self._config.get(key), Decimal):
                self._config[key] = float(self._config[key])
        try:
            errors = super()._validate_config(raise_errors=raise_errors)
        except ConfigValidationError as exc:
            errors = list(exc.errors)
        errors += config_problems(self._config)
        passcode = self._config.get("passcode")
        if passcode not in (None, ""):
            # jsonschema messages quote the value ("123 is not of type 'string'").
            errors = [error.replace(str(passcode), "***") for error in errors]
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed", errors=errors, schema=self.config_jsonschema
            )
        return errors

    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:
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

    _deferring_signals = False
    _deferred_signal: int | None = None

    @contextlib.contextmanager
    def whole_lines(self) -> Iterator[None]:
        """SIGTERM/SIGINT arriving while the block writes are handled after it. A signal
        interrupts a large write to a full pipe part-way; the STATE written on the way out
        would otherwise land in the middle of a RECORD line."""
        self._deferring_signals = True
        try:
            yield
        finally:
            self._deferring_signals = False
            if self._deferred_signal is not None:
                self._handle_termination(self._deferred_signal, None)

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: write the state earned so far (whole windows only) and exit
        non-zero, so that an orchestrator does not take the run for a success."""
        if self._deferring_signals:
            self._deferred_signal = signum
            return
        self.logger.warning(
            "Stopped by signal %d; the last STATE covers whole windows only", signum
        )
        try:
            self._state_writer.write_state(self.state)
        finally:
            sys.exit(128 + signum)
