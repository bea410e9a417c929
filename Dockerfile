# A small image running `customer-segments serve` as a non-root user (uid 10001). The health
# check is `customer-segments health`: it reads the same settings as `serve`
# (CUSTOMER_SEGMENTS_GRPC_PORT, ...) and asks grpc.health.v1, so set ports by environment
# variable, not by flag, for it to follow them.
# Build: docker build -t customer-segments \
#          --build-arg REVISION="$(git rev-parse HEAD)" \
#          --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
# Run:   docker run -p 50051:50051 -p 8080:8080 -p 9464:9464 -v cs-data:/data customer-segments
#        (gRPC, REST, Prometheus /metrics. A named volume starts out owned by uid 10001; a host
#         directory must be made writable for it first: `sudo chown 10001 /srv/cs-data`, then
#         `-v /srv/cs-data:/data`.)
#        (PostgreSQL: -e CUSTOMER_SEGMENTS_DATABASE_URL=postgresql://user@host:5432/db, or
#         CUSTOMER_SEGMENTS_DATABASE_URL_FILE=/run/secrets/db-url, after
#         `docker run ... customer-segments migrate`)
# Tokens: production sets -e CUSTOMER_SEGMENTS_JWKS=https://idp.example/.well-known/jwks.json;
#         otherwise a development secret is made in /data, and
#         `docker run --rm -v cs-data:/data customer-segments token --tenant T --scope "..."`
#         prints a token signed with it.
# Settings: `docker run --rm customer-segments config` prints the effective ones.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY generated ./generated
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir ".[server]"

FROM python:3.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="customer-segments" \
      org.opencontainers.image.description="Self-hostable Emporix Customer Segment service: gRPC core, async store, REST gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
RUN useradd --system --uid 10001 --home-dir /data --create-home app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CUSTOMER_SEGMENTS_DATA_DIR=/data
USER app
WORKDIR /data
VOLUME ["/data"]
# gRPC, REST, Prometheus /metrics.
EXPOSE 50051 8080 9464
# Python's start-up takes about a second of the timeout; the gRPC call gets 2 s of it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["customer-segments", "health"]
ENTRYPOINT ["customer-segments"]
CMD ["serve"]
