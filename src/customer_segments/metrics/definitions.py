"""Every metric of the service, defined in one place (imported only when metrics are on).

The gRPC ones are named and labelled as the grpc-ecosystem interceptors (go-grpc-middleware's
providers/prometheus) name them, the REST one as OpenTelemetry's semantic conventions do, so
that existing dashboards and alerts work; the service's own carry the `customer_segments_`
prefix. No label holds a tenant, customer or segment id: each label has a small fixed set of
values.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from customer_segments.metrics.direct import DirectCounter

# The Go client's DefBuckets, which go-grpc-middleware's handling-time histogram uses.
GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The advised boundaries of http.server.request.duration and db.client.operation.duration.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
DATABASE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
HTTP_LABELS = ("http_request_method", "http_route", "http_response_status_code")
POOL = ("pool",)


class Instruments:
    """Created once per process (metrics.instruments()); registered in no registry, since the
    scrape reads the values the processes write (exposition.py)."""

    def __init__(self) -> None:
        self.grpc_started = Counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            GRPC_LABELS,
            registry=None,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*GRPC_LABELS, "grpc_code"),
            registry=None,
        )
        self.grpc_received = Counter(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            GRPC_LABELS,
            registry=None,
        )
        self.grpc_sent = Counter(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            GRPC_LABELS,
            registry=None,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            GRPC_LABELS,
            buckets=GRPC_BUCKETS,
            registry=None,
        )
        self.http_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            HTTP_LABELS,
            buckets=HTTP_BUCKETS,
            registry=None,
        )
        # Gauges: the sum over the processes alive (a stopped worker's are dropped).
        self.pool_size = Gauge(
            "customer_segments_db_pool_size",
            "Connections each database pool may hold, over all processes.",
            POOL,
            multiprocess_mode="livesum",
            registry=None,
        )
        self.pool_in_use = Gauge(
            "customer_segments_db_pool_connections_in_use",
            "Connections of each pool handed out to calls.",
            POOL,
            multiprocess_mode="livesum",
            registry=None,
        )
        self.pool_waiting = Gauge(
            "customer_segments_db_pool_waiting",
            "Calls waiting for a connection of each pool (none was free).",
            POOL,
            multiprocess_mode="livesum",
            registry=None,
        )
        self.query_duration = Histogram(
            "customer_segments_db_query_duration_seconds",
            "Duration of database statements, by the statement's first keyword.",
            ("operation",),
            buckets=DATABASE_BUCKETS,
            registry=None,
        )
        self.bulk_items = Counter(
            "customer_segments_bulk_items_total",
            "Items of bulk and stream assignment calls, by what became of each.",
            ("operation", "outcome"),
            registry=None,
        )
        token_verifications = Counter(
            "customer_segments_token_verifications_total",
            "Bearer tokens of gRPC calls checked, by result (calls of the public health and "
            "reflection services need none).",
            ("result",),
            registry=None,
        )
        # Once per gRPC call: written directly (direct.py).
        self.token_accepted = DirectCounter(token_verifications.labels("accepted"))
        self.token_refused = DirectCounter(token_verifications.labels("refused"))
        jwks_refreshes = Counter(
            "customer_segments_jwks_refreshes_total",
            "Reads of the JWKS (at start, on an unknown kid, when its keys are old), by result.",
            ("result",),
            registry=None,
        )
        self.jwks_loaded = jwks_refreshes.labels("ok")
        self.jwks_failed = jwks_refreshes.labels("failed")
        # Webhooks: attempts by what the receiver (or the way to it) answered, and deliveries
        # that failed after the last retry. No endpoint or tenant label: ids are unbounded.
        webhook_attempts = Counter(
            "customer_segments_webhook_attempts_total",
            "Webhook delivery attempts, by outcome: delivered (2xx), rejected (another status), "
            "gone (410: the endpoint turned inactive), timeout, unreachable (no connection), "
            "refused (the destination resolved to a forbidden address).",
            ("outcome",),
            registry=None,
        )
        self.webhook_attempts = {
            outcome: webhook_attempts.labels(outcome)
            for outcome in ("delivered", "rejected", "gone", "timeout", "unreachable", "refused")
        }
        self.webhook_failed = Counter(
            "customer_segments_webhook_deliveries_failed_total",
            "Webhook deliveries that failed after the last attempt of the retry schedule.",
            registry=None,
        )
        nats_events = Counter(
            "customer_segments_nats_events_published_total",
            "Events of the outbox published to NATS JetStream, by outcome: acked (stored), "
            "duplicate (acked as one JetStream had already: a publish repeated after a failure), "
            "failed (not acknowledged: published again later).",
            ("outcome",),
            registry=None,
        )
        self.nats_acked = nats_events.labels("acked")
        self.nats_duplicate = nats_events.labels("duplicate")
        self.nats_failed = nats_events.labels("failed")
