//! Prometheus metrics with the fixed names of SPEC §9. Labels stay bounded: route names come
//! from the config, statuses are numbers, results and kinds are fixed words.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A route name as a metric label: shared, so labelling a request copies no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteName(std::sync::Arc<str>);

impl RouteName {
    pub fn new(name: &str) -> RouteName {
        RouteName(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl prometheus_client::encoding::EncodeLabelValue for RouteName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, &self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: RouteName,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: RouteName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteKind {
    pub route: RouteName,
    pub kind: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The `route` label for requests that matched no route or were the gateway's own.
pub const NO_ROUTE: &str = "";
pub const GATEWAY_ROUTE: &str = "gatehouse";

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub duration: HistogramFamily,
    pub auth_decisions: Family<ResultLabel, Counter>,
    pub logins: Family<ResultLabel, Counter>,
    pub refresh: Family<ResultLabel, Counter>,
    pub sessions_active: Gauge,
    pub revocations_active: Gauge,
    pub upstream_errors: Family<RouteKind, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RouteStatus, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let auth_decisions = Family::<ResultLabel, Counter>::default();
        let logins = Family::<ResultLabel, Counter>::default();
        let refresh = Family::<ResultLabel, Counter>::default();
        let sessions_active = Gauge::default();
        let revocations_active = Gauge::default();
        let upstream_errors = Family::<RouteKind, Counter>::default();
        // Counters get `_total` appended by the encoder.
        registry.register(
            "gatehouse_requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "gatehouse_request_duration_seconds",
            "Time to answer a request",
            duration.clone(),
        );
        registry.register(
            "gatehouse_auth_decisions",
            "Authentication decisions: allowed, unauthenticated, forbidden, refreshed",
            auth_decisions.clone(),
        );
        registry.register(
            "gatehouse_logins",
            "Login attempts by result",
            logins.clone(),
        );
        registry.register(
            "gatehouse_refresh",
            "Refresh-token uses by result",
            refresh.clone(),
        );
        registry.register(
            "gatehouse_sessions_active",
            "Live sessions in the store",
            sessions_active.clone(),
        );
        registry.register(
            "gatehouse_revocations_active",
            "Revocations remembered",
            revocations_active.clone(),
        );
        registry.register(
            "gatehouse_upstream_errors",
            "Upstream failures by route and kind",
            upstream_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            auth_decisions,
            logins,
            refresh,
            sessions_active,
            revocations_active,
            upstream_errors,
        }
    }

    /// Creates every bounded series at zero, so each metric name is present from the start
    /// and dashboards see zeros rather than gaps.
    pub fn prime<'a>(&self, routes: impl IntoIterator<Item = &'a str>) {
        for result in ["allowed", "unauthenticated", "forbidden", "refreshed"] {
            let _ = self.auth_decisions.get_or_create(&ResultLabel { result });
        }
        for result in ["success", "failure", "locked"] {
            let _ = self.logins.get_or_create(&ResultLabel { result });
        }
        for result in [
            "rotated",
            "grace",
            "reuse_detected",
            "user_changed",
            "invalid",
            "error",
        ] {
            let _ = self.refresh.get_or_create(&ResultLabel { result });
        }
        for route in routes {
            for kind in ["connect", "timeout", "protocol"] {
                let _ = self.upstream_errors.get_or_create(&RouteKind {
                    route: RouteName::new(route),
                    kind,
                });
            }
        }
    }

    pub fn auth_decision(&self, result: &'static str) {
        let _ = self
            .auth_decisions
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn login(&self, result: &'static str) {
        let _ = self.logins.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn refresh_result(&self, result: &'static str) {
        let _ = self.refresh.get_or_create(&ResultLabel { result }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
