//! The sidecar's Prometheus metrics (`prometheus-client`, OpenMetrics text). Every label value is
//! one of a fixed set this code names (event kinds, status codes, endpoint groups, configured
//! issuers): nothing a caller sends becomes part of a metric name or label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabel {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotificationLabel {
    /// A configured webhook's name, or `*` for a notice dropped before it reached one.
    webhook: String,
    outcome: &'static str,
}

/// Webhook deliveries by webhook and outcome (`delivered`, `retried`, `failed`, `refused`,
/// `dropped`), shared with the delivery thread.
#[derive(Clone, Debug, Default)]
pub struct NotificationCounters(Family<NotificationLabel, Counter>);

impl NotificationCounters {
    pub fn count(&self, webhook: &str, outcome: &'static str) {
        self.0.get_or_create(&NotificationLabel { webhook: webhook.to_owned(), outcome }).inc();
    }
}

/// Every metric the sidecar exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    audit_events: Family<EventLabel, Counter>,
    responses: Family<StatusLabel, Counter>,
    unauthenticated: Family<EndpointLabel, Counter>,
    shed: Family<GroupLabel, Counter>,
    identity_keys_skipped: Family<IssuerLabel, Counter>,
    pub notifications: NotificationCounters,
    pub replay_full: Counter,
    pub rate_limited: Counter,
    pub torn_records_truncated: Counter,
    pub grants: Gauge,
    pub revocations: Gauge,
    pub replay_keys: Gauge,
    /// The audit chain: segments kept, their bytes, and the last full verification.
    pub audit_segments: Gauge,
    pub audit_bytes: Gauge,
    pub audit_verify_ok: Gauge,
    pub audit_verify_timestamp: Gauge,
    pub audit_verified_events: Gauge,
    pub audit_stream_failures: Counter,
    pub audit_anchor_failures: Gauge,
    /// The audit exporters (`audit.export`), shared with their threads.
    pub export: ExportCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("jitgate_sidecar");
        let m = Metrics {
            audit_events: Family::default(),
            responses: Family::default(),
            unauthenticated: Family::default(),
            shed: Family::default(),
            identity_keys_skipped: Family::default(),
            notifications: NotificationCounters::default(),
            replay_full: Counter::default(),
            rate_limited: Counter::default(),
            torn_records_truncated: Counter::default(),
            grants: Gauge::default(),
            revocations: Gauge::default(),
            replay_keys: Gauge::default(),
            audit_segments: Gauge::default(),
            audit_bytes: Gauge::default(),
            audit_verify_ok: Gauge::default(),
            audit_verify_timestamp: Gauge::default(),
            audit_verified_events: Gauge::default(),
            audit_stream_failures: Counter::default(),
            audit_anchor_failures: Gauge::default(),
            export: ExportCounters::default(),
            registry: Registry::default(),
        };
        registry.register("audit_events", "Audit events appended, by event", m.audit_events.clone());
        registry.register("http_responses", "HTTP responses, by status", m.responses.clone());
        registry.register(
            "unauthenticated",
            "Calls to caller-only endpoints without valid credentials (401)",
            m.unauthenticated.clone(),
        );
        registry.register(
            "notifications",
            "Webhook notices by webhook and outcome (delivered, retried, failed, refused, dropped)",
            m.notifications.0.clone(),
        );
        registry.register("shed", "Requests refused because their group was at its limit (503)", m.shed.clone());
        registry.register(
            "identity_keys_skipped",
            "Unusable keys skipped in an identity provider's JWKS",
            m.identity_keys_skipped.clone(),
        );
        registry.register(
            "replay_ledger_full",
            "Replay checks refused because the ledger was full",
            m.replay_full.clone(),
        );
        registry.register(
            "revocations_rate_limited",
            "Self-revocations refused over the rate limit (429)",
            m.rate_limited.clone(),
        );
        registry.register(
            "torn_records_truncated",
            "Incomplete last records found after a crash and truncated at start",
            m.torn_records_truncated.clone(),
        );
        registry.register("grants", "Grants in the store", m.grants.clone());
        registry.register("revocations", "Revocations still in the feed", m.revocations.clone());
        registry.register("replay_keys", "Live keys in the embedded cluster replay ledger", m.replay_keys.clone());
        registry.register("audit_segments", "Segment files of the audit chain kept on disk", m.audit_segments.clone());
        registry.register("audit_bytes", "Bytes of the audit chain kept on disk", m.audit_bytes.clone());
        registry.register(
            "audit_verify_ok",
            "1 if the last full verification of the audit chain found it intact, 0 if not, -1 before the first",
            m.audit_verify_ok.clone(),
        );
        registry.register(
            "audit_verify_timestamp_seconds",
            "When the last full verification of the audit chain finished (Unix seconds)",
            m.audit_verify_timestamp.clone(),
        );
        registry.register(
            "audit_verified_events",
            "Events the last full verification of the audit chain proved",
            m.audit_verified_events.clone(),
        );
        m.export.register(&mut registry);
        registry.register(
            "audit_stream_failures",
            "Audit events chained but not copied to the Redis stream",
            m.audit_stream_failures.clone(),
        );
        registry.register(
            "audit_anchor_failures",
            "Heads or checkpoints that could not be written to the anchor file since start",
            m.audit_anchor_failures.clone(),
        );
        m.audit_verify_ok.set(-1);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// `event` must come from this code (an `AuditKind` name), never from a caller.
    pub fn audit_event(&self, event: &'static str) {
        self.audit_events.get_or_create(&EventLabel { event }).inc();
    }

    /// `n` events of one kind at once (a shipped batch: one lookup, not one per event).
    pub fn audit_events_by(&self, event: &'static str, n: u64) {
        if n > 0 {
            self.audit_events.get_or_create(&EventLabel { event }).inc_by(n);
        }
    }

    pub fn response(&self, status: u16) {
        self.responses.get_or_create(&StatusLabel { status }).inc();
    }

    pub fn unauthenticated(&self, endpoint: &'static str) {
        self.unauthenticated.get_or_create(&EndpointLabel { endpoint }).inc();
    }

    pub fn shed(&self, group: &'static str) {
        self.shed.get_or_create(&GroupLabel { group }).inc();
    }

    /// `issuer` is a configured identity issuer.
    pub fn identity_key_skipped(&self, issuer: &str) {
        self.identity_keys_skipped.get_or_create(&IssuerLabel { issuer: issuer.to_owned() }).inc();
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    /// A configured `audit.export` sink's name.
    sink: String,
}

/// Per audit export sink: events sent, connect/write failures, the acknowledged position and the
/// lag behind the chain's head, events retention removed before they were exported.
#[derive(Clone, Debug, Default)]
pub struct ExportCounters {
    events: Family<SinkLabel, Counter>,
    failures: Family<SinkLabel, Counter>,
    lag: Family<SinkLabel, Gauge>,
    acknowledged: Family<SinkLabel, Gauge>,
    skipped: Family<SinkLabel, Counter>,
}

impl ExportCounters {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_export_events",
            "Audit events sent to an export sink, resends included",
            self.events.clone(),
        );
        registry.register(
            "audit_export_failures",
            "Connect, write and connection failures of an export sink",
            self.failures.clone(),
        );
        registry.register(
            "audit_export_lag_events",
            "Chain events an export sink has not had acknowledged yet",
            self.lag.clone(),
        );
        registry.register(
            "audit_export_acknowledged_seq",
            "The last audit seq an export sink acknowledged",
            self.acknowledged.clone(),
        );
        registry.register(
            "audit_export_skipped_events",
            "Audit events removed by retention before an export sink sent them",
            self.skipped.clone(),
        );
    }

    fn label(sink: &str) -> SinkLabel {
        SinkLabel { sink: sink.to_owned() }
    }

    /// Creates a configured sink's series, so they read 0 before anything happens.
    pub fn declare(&self, sink: &str) {
        let l = Self::label(sink);
        drop(self.events.get_or_create(&l));
        drop(self.failures.get_or_create(&l));
        drop(self.skipped.get_or_create(&l));
        drop(self.lag.get_or_create(&l));
        drop(self.acknowledged.get_or_create(&l));
    }

    pub fn sent(&self, sink: &str, events: u64) {
        self.events.get_or_create(&Self::label(sink)).inc_by(events);
    }

    pub fn failure(&self, sink: &str) {
        self.failures.get_or_create(&Self::label(sink)).inc();
    }

    pub fn skipped(&self, sink: &str, events: u64) {
        self.skipped.get_or_create(&Self::label(sink)).inc_by(events);
    }

    pub fn position(&self, sink: &str, acknowledged: u64, lag: u64) {
        let l = Self::label(sink);
        self.acknowledged.get_or_create(&l).set(i64::try_from(acknowledged).unwrap_or(i64::MAX));
        self.lag.get_or_create(&l).set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}
