# A small image running `customer-segments serve` as a non-root user. The health check asks
# grpc.health.v1 on the default port 50051.
# Build: docker build -t customer-segments .
# Run:   docker run -p 50051:50051 -v cs-data:/data customer-segments
#        (PostgreSQL: -e CUSTOMER_SEGMENTS_DATABASE_URL=postgresql://user@host:5432/db, after
#         `docker run ... customer-segments migrate`)
# Tokens: production sets -e CUSTOMER_SEGMENTS_JWKS=https://idp.example/.well-known/jwks.json;
#         otherwise a development secret is made in /data, and
#         `docker run --rm -v cs-data:/data customer-segments token --tenant T --scope "..."`
#         prints a token signed with it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY generated ./generated
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir ".[server]"

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --create-home app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CUSTOMER_SEGMENTS_DATA_DIR=/data
USER app
WORKDIR /data
VOLUME ["/data"]
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import grpc, sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; \
c = grpc.insecure_channel('127.0.0.1:50051'); \
r = g.HealthStub(c).Check(h.HealthCheckRequest(), timeout=2); \
sys.exit(0 if r.status == h.HealthCheckResponse.SERVING else 1)"
ENTRYPOINT ["customer-segments"]
CMD ["serve"]
