# Journey Tower worker image: `docker build -t journey-tower .`
# Runs `tower worker` by default; any other subcommand works too, e.g. `docker run ... topics create`.
# (`tower kafka ...` and `tower demo` need Java, Maven and a source checkout: not in this image.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.md is the package's readme and LICENSE its licence file in pyproject.toml, so the
# build needs them; the build packs schemas/ into the package (pipeline.schemas) and the
# agents' HTTP client (journey_tower_client, for `tower mcp`).
COPY pyproject.toml README.md LICENSE ./
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY clients/python/src ./clients/python/src
RUN pip install . \
    && rm -rf build *.egg-info \
    && useradd --create-home --uid 10001 --user-group tower \
    && mkdir -p /data /secrets \
    && chown tower:tower /data /secrets

# State (RocksDB) goes to /data, a volume per container; it is rebuilt from the changelog topic
# if the volume is lost.
# Bound to 0.0.0.0, the worker needs TOWER_WEB_TOKENS_FILE (e.g. in /secrets): docs/security.md.
# Every replica is its own: its group member (and transactional) id comes from the container's
# host name (TOWER_INSTANCE_ID overrides it), and so does the URL other workers forward to.
ENV TOWER_DATA_DIR=/data \
    TOWER_WEB_HOST=0.0.0.0 \
    TOWER_WEB_URL=http://{hostname}:6066

USER tower
VOLUME ["/data"]
EXPOSE 6066

ENTRYPOINT ["tower"]
CMD ["worker"]
