"""Run by tests/test_pyairbyte.py with PyAirbyte's own interpreter (`.venv-airbyte`).

    python run_source.py SOURCE_EXECUTABLE CONFIG_JSON WORK_DIR check|read

Writes what happened to WORK_DIR/result.json: the check's outcome, or the event_ids (and
profile and campaign-family keys) that landed in the DuckDB cache at WORK_DIR/cache.duckdb.
"""

import json
import sys
from pathlib import Path

import airbyte as ab
from airbyte.caches import DuckDBCache
from airbyte.exceptions import AirbyteConnectorCheckFailedError

# Each stream's key column, the first of these it has.
KEY_COLUMNS = ("event_id", "clevertap_id", "message_id", "id", "key")
executable, config_path, work, action = sys.argv[1:5]
work_dir = Path(work)
config = json.loads(Path(config_path).read_text())
source = ab.get_source(
    "source-clevertap", config=config, local_executable=executable, install_if_missing=False
)
result: dict[str, object] = {}
if action == "check":
    try:
        source.check()
        result["check"] = "succeeded"
    except AirbyteConnectorCheckFailedError as exc:
        result["check"] = "failed"
        result["message"] = str(exc) + " " + json.dumps(getattr(exc, "context", None), default=str)
else:
    source.select_all_streams()
    cache = DuckDBCache(
        db_path=work_dir / "cache.duckdb", schema_name="clevertap", cache_dir=work_dir / "cache"
    )
    read = source.read(cache=cache)
    keys: dict[str, list[object]] = {}
    for name, dataset in read.streams.items():
        frame = dataset.to_pandas()
        column = next(c for c in KEY_COLUMNS if c in frame.columns)
        keys[name] = sorted(frame[column].tolist())
    result["keys"] = keys
(work_dir / "result.json").write_text(json.dumps(result))
