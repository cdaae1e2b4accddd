"""The tap's streams: events and profiles (window by window), and the schema catalogs."""

from tap_clevertap.streams.catalogs import CatalogStream
from tap_clevertap.streams.events import EventStream
from tap_clevertap.streams.profiles import ProfileStream
from tap_clevertap.streams.windowed import BOOKMARK_KEY, Collaborators, WindowedExportStream

__all__ = [
    "BOOKMARK_KEY",
    "CatalogStream",
    "Collaborators",
    "EventStream",
    "ProfileStream",
    "WindowedExportStream",
]
