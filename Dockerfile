# The Airbyte connector image: `source-clevertap` (spec, check, discover, read).
#   docker build -t airbyte/source-clevertap:0.1.0 .
# tests/test_docker_image.py replays these steps in a fresh virtual environment (no Docker
# daemon is needed) and checks that the version label matches pyproject.toml.
FROM python:3.11-slim

WORKDIR /airbyte/integration_code
COPY pyproject.toml README.md LICENSE ./
COPY tap_clevertap ./tap_clevertap
RUN pip install --no-cache-dir .

ENV AIRBYTE_ENTRYPOINT="source-clevertap"
ENTRYPOINT ["source-clevertap"]

LABEL io.airbyte.name="airbyte/source-clevertap"
LABEL io.airbyte.version="0.1.0"
