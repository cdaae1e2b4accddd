"""tap-clevertap: CleverTap events, profiles, schema catalogs and campaigns as Singer streams."""

from __future__ import annotations

import contextlib
import logging
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
from tap_clevertap.discovery import (
    EVENT_COUNTS_STREAM,
    EVENT_SCHEMA_STREAM,
    USER_PROPERTIES_STREAM,
    discovered_events,
    reserved_stream_names,
    stream_name_for,
    stream_names_for,
)
from tap_clevertap.errors import CleverTapError
from tap_clevertap.exports import ExportScheduler, PlannedExport
from tap_clevertap.output import SingerOutput
from tap_clevertap.runtime import tune_for_a_sync
from tap_clevertap.signals import GATE
from tap_clevertap.spool import SpoolBudget
from tap_clevertap.streams import (
    CampaignReportStream,
    CampaignStream,
    CategoryGroupStream,
    Collaborators,
    ContentBlockStream,
    EventCountStream,
    EventStream,
    MessageReportStream,
    ProfileStream,
    Refusals,
    SchemaCatalogStream,
    WindowedExportStream,
)
from tap_clevertap.streams.counts import CountLedger
from tap_clevertap.windows import today_in

if TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk import Stream
    from singer_sdk.helpers.capabilities import CapabilitiesEnum


class TapClevertap(Tap):
    """Exports CleverTap events (one stream per event), profiles and schema catalogs."""

    # (The docstring above is the tap's description in `--about`.) The export streams share
    # collaborators, made here and handed to each stream (`Collaborators`): the request slots
    # (CleverTap allows 3 requests in flight per account), the export scheduler (exports
    # read ahead across streams), the Singer output (`SingerOutput`, this tap's message
    # writer), the state writer and the refusals.

    name = "tap-clevertap"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = SingerOutput
    # Without event_names, the streams are the project's events (getSchema), asked anew
    # each time: Meltano then runs discovery rather than caching a catalog.
    dynamic_catalog = True
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
        GATE.install(self._stop)

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
        """Reads the exports of every selected stream ahead, in the order they are read."""
        return ExportScheduler(
            max_concurrent_requests=self.config["max_concurrent_requests"],
            max_exports_ahead=self.config["max_exports_ahead"],
            spool_budget=SpoolBudget(
                memory_bytes=self.config["spool_memory_bytes"],
                disk_bytes=self.config["spool_disk_bytes"],
                directory=self.config.get("spool_dir"),
            ),
            logger=self.logger,
        )

    @cached_property
    def refusals(self) -> Refusals:
        """The events CleverTap refused to export in this run."""
        return Refusals()

    @cached_property
    def counts(self) -> CountLedger:
        """What the event streams read, for `event_counts` (inactive unless it is synced)."""
        return CountLedger()

    @cached_property
    def collaborators(self) -> Collaborators:
        """What every export stream is handed when it is created."""
        return Collaborators(
            request_slots=self.request_slots,
            exports=self.exports,
            output=self.output,
            write_state=self.state_writer.write_state,
            refusals=self.refusals,
            counts=self.counts,
        )

    @property
    @override
    def streams(self) -> dict[str, Stream]:
        """The SDK's streams, synced in this order: by name, and `event_counts` last.

        The SDK syncs streams in name order; `event_counts` describes what the event streams
        read, so it comes after every one of them.
        """
        streams = super().streams
        if EVENT_COUNTS_STREAM in streams and next(reversed(streams)) != EVENT_COUNTS_STREAM:
            streams[EVENT_COUNTS_STREAM] = streams.pop(EVENT_COUNTS_STREAM)  # the cached dict
        return streams

    def planned_exports(self) -> list[PlannedExport]:
        """Every export of the selected windowed streams, in the order the sync reads them.

        Streams are synced in the order of `self.streams`; the state and the catalog's
        selection must be known (they are once the tap is built).
        """
        today = today_in(self.config["timezone"])
        return [
            export
            for stream in self.streams.values()
            if isinstance(stream, WindowedExportStream) and stream.selected
            for export in stream.planned_exports(today)
        ]

    @override
    def discover_streams(self) -> list[Stream]:
        streams: list[Stream] = [
            EventStream(self, event, stream_name=name, collaborators=self.collaborators)
            for event, name in self._event_streams().items()
        ]
        if self.config.get("profile_event_names"):
            streams.append(ProfileStream(self, collaborators=self.collaborators))
        if self.config.get("include_catalog_streams"):
            streams += [self.schema_catalog_stream(EVENT_SCHEMA_STREAM, "events")]
            streams += [self.schema_catalog_stream(USER_PROPERTIES_STREAM, "userProperties")]
        if self.config.get("include_event_counts"):
            streams.append(
                EventCountStream(self, request_slots=self.request_slots, ledger=self.counts)
            )
        if self.config.get("include_campaign_streams"):
            streams += [
                family(self, request_slots=self.request_slots)
                for family in (
                    CampaignStream,
                    CampaignReportStream,
                    MessageReportStream,
                    ContentBlockStream,
                    CategoryGroupStream,
                )
            ]
        self._warn_of_missing_selected({stream.name for stream in streams})
        return streams

    def schema_catalog_stream(self, name: str, kind: str) -> SchemaCatalogStream:
        """The stream `name` of getSchema's `kind`; discovery and `check` ask it too."""
        return SchemaCatalogStream(self, name=name, kind=kind, request_slots=self.request_slots)

    def _event_streams(self) -> dict[str, str]:
        """Event name -> stream name: the configured events, or the project's (getSchema)."""
        configured = self.config.get("event_names")
        if configured is not None:
            return {event: stream_name_for(event) for event in configured}
        try:
            items = self.schema_catalog_stream(EVENT_SCHEMA_STREAM, "events").schema_items()
            events = discovered_events(items, self.config.get("exclude_event_names") or [])
        except CleverTapError as exc:
            exc.where = "discovering the project's events (GET /getSchema?type=events)"
            raise
        names = stream_names_for(events, reserved_stream_names(self.config))
        if names.hashed:
            self.logger.warning(
                "Event names that are empty, reserved or shared once normalised get a stream "
                "name with a hash of the event name: %s",
                ", ".join(f"{event!r} -> {names.streams[event]}" for event in names.hashed),
            )
        return names.streams

    def _warn_of_missing_selected(self, names: set[str]) -> None:
        """One WARNING per stream selected in the input catalog that the tap no longer has."""
        if self.input_catalog is None:
            return
        for entry in self.input_catalog.streams:
            root = entry.metadata.root
            selected = root.selected if root.selected is not None else root.selected_by_default
            if selected and entry.tap_stream_id not in names:
                self.logger.warning(
                    "Stream %r is selected in the catalog but CleverTap no longer lists its "
                    "event (or the config leaves it out): skipped",
                    entry.tap_stream_id,
                )

    @override  # type: ignore[misc]  # `sync_all` is `final` to type checkers only
    def sync_all(self) -> None:
        """The SDK's sync of every stream, with the exports planned first and read ahead.

        The event streams record what they read for `event_counts` when it is selected.

        After the last stream, an event named in `event_names` or `profile_event_names`
        that CleverTap refused fails the run (discovered events it refuses are only warned
        of). Reading ahead stops, and its spool goes, whatever happened. tests/
        test_sdk_contract.py fails if the SDK's `sync_all` changes what this relies on.

        Raises:
            EventsRefused: CleverTap refused events named in the config.
        """
        try:
            self._begin_counts()
            self.exports.start(self.planned_exports())
            super().sync_all()
            named = {*(self.config.get("event_names") or [])}
            named |= {*(self.config.get("profile_event_names") or [])}
            self.refusals.raise_for(named)
        finally:
            self.exports.stop()

    def _begin_counts(self) -> None:
        """When `event_counts` is synced, the event streams record what they read for it."""
        count_stream = self.streams.get(EVENT_COUNTS_STREAM)
        if isinstance(count_stream, EventCountStream) and count_stream.selected:
            count_stream.begin(
                {
                    stream.name: stream.bookmark
                    for stream in self.streams.values()
                    if isinstance(stream, EventStream) and stream.selected
                }
            )

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
    def invoke(  # type: ignore[override]  # the SDK's own signature (it ignores its base's)
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: Any = None,
        state: Any = None,
        catalog: Any = None,
    ) -> None:
        """The command line: the SDK's, tuned for a sync, known failures as one line (exit 1)."""
        tune_for_a_sync()
        with one_line_failures(cls.logger):
            super().invoke(
                about=about, about_format=about_format, config=config, state=state, catalog=catalog
            )

    @classmethod
    @override
    def cb_discover(cls, ctx: Any, param: Any, value: bool) -> None:
        """`--discover`, ending known failures (getSchema refused) with one line."""
        with one_line_failures(cls.logger):
            super().cb_discover(ctx, param, value)

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


@contextlib.contextmanager
def one_line_failures(logger: logging.Logger) -> Iterator[None]:
    """Known failures end the run with one line saying what to do, and exit code 1."""
    try:
        yield
    except CleverTapError as exc:
        # One line saying what happened and what to do; no traceback for known failures.
        logger.error("%s", exc.one_line())  # noqa: TRY400
        sys.exit(1)
    except BrokenPipeError:
        logger.error(  # noqa: TRY400
            "the target stopped reading the tap's output (broken pipe): see the target's "
            "own log for why; the last STATE it received resumes without loss"
        )
        # Python would flush stdout again on the way out and fail on the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
