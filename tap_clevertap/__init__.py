"""tap-clevertap: a Singer tap for CleverTap's Get Events API."""
