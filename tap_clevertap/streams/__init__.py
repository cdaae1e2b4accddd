"""The tap's streams: events and profiles (window by window), schema catalogs, campaigns.

The campaign family: campaigns, their reports, message reports, content blocks and category
groups.
"""

from tap_clevertap.streams.campaigns import (
    CampaignReportStream,
    CampaignStream,
    MessageReportStream,
)
from tap_clevertap.streams.content import CategoryGroupStream, ContentBlockStream
from tap_clevertap.streams.counts import CountLedger, EventCountStream
from tap_clevertap.streams.events import EventStream
from tap_clevertap.streams.profiles import ProfileStream
from tap_clevertap.streams.schema_catalogs import SchemaCatalogStream
from tap_clevertap.streams.windowed import (
    BOOKMARK_KEY,
    Collaborators,
    Refusals,
    WindowedExportStream,
)

__all__ = [
    "BOOKMARK_KEY",
    "CampaignReportStream",
    "CampaignStream",
    "CategoryGroupStream",
    "Collaborators",
    "ContentBlockStream",
    "CountLedger",
    "EventCountStream",
    "EventStream",
    "MessageReportStream",
    "ProfileStream",
    "Refusals",
    "SchemaCatalogStream",
    "WindowedExportStream",
]
