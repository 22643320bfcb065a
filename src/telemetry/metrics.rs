//! Prometheus metrics with the fixed names of SPEC §9. Labels stay bounded: route names come
//! from the config, statuses are numbers, results and kinds are fixed words.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A route name as a metric label: shared, so labelling a request copies no string. It also
/// remembers its series in the gateway's [`Metrics`] once used, so that counting a request
/// (every request) looks nothing up in the metric families.
#[derive(Clone)]
pub struct RouteName(Arc<RouteNameInner>);

struct RouteNameInner {
    name: Box<str>,
    series: OnceLock<RouteSeries>,
}

/// One route's series in one [`Metrics`]: its latency histogram and a counter per status,
/// each resolved from its family on first use.
struct RouteSeries {
    metrics: u64,
    duration: Histogram,
    /// Statuses 100..=599, at `status - 100`.
    statuses: Box<[OnceLock<Counter>]>,
}

impl RouteName {
    pub fn new(name: &str) -> RouteName {
        RouteName(Arc::new(RouteNameInner {
            name: name.into(),
            series: OnceLock::new(),
        }))
    }
    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    /// This route's series in `metrics`; `None` when the label was first used with another
    /// gateway's metrics (tests running several gateways from one config).
    fn series(&self, metrics: &Metrics) -> Option<&RouteSeries> {
        let series = self.0.series.get_or_init(|| RouteSeries {
            metrics: metrics.id,
            duration: metrics
                .duration
                .get_or_create(&RouteLabel {
                    route: self.clone(),
                })
                .clone(),
            statuses: (100..600).map(|_| OnceLock::new()).collect(),
        });
        (series.metrics == metrics.id).then_some(series)
    }
}

impl std::fmt::Debug for RouteName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RouteName").field(&self.as_str()).finish()
    }
}

impl PartialEq for RouteName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteName {}

impl std::hash::Hash for RouteName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl prometheus_client::encoding::EncodeLabelValue for RouteName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
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

/// `gatehouse_logins_total`: the result, and `local` or the identity provider's id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabel {
    pub result: &'static str,
    pub provider: String,
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

/// The results `gatehouse_auth_decisions_total` counts, in the order of
/// [`Metrics::decisions`].
const DECISIONS: [&str; 4] = ["allowed", "unauthenticated", "forbidden", "refreshed"];

pub struct Metrics {
    /// Tells this instance's series apart in [`RouteName`]s shared with another gateway.
    id: u64,
    registry: Registry,
    /// The `result` series of `auth_decisions`, resolved once.
    decisions: [Counter; 4],
    /// Labels for requests that matched no route, and for the gateway's own endpoints.
    pub no_route: RouteName,
    pub gateway_route: RouteName,
    pub requests: Family<RouteStatus, Counter>,
    pub duration: HistogramFamily,
    pub auth_decisions: Family<ResultLabel, Counter>,
    pub logins: Family<LoginLabel, Counter>,
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
        let logins = Family::<LoginLabel, Counter>::default();
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
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let decisions = DECISIONS.map(|result| {
            auth_decisions
                .get_or_create(&ResultLabel { result })
                .clone()
        });
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            decisions,
            no_route: RouteName::new(NO_ROUTE),
            gateway_route: RouteName::new(GATEWAY_ROUTE),
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
        for result in ["success", "failure", "locked"] {
            let _ = self.logins.get_or_create(&LoginLabel {
                result,
                provider: "local".into(),
            });
        }
        for result in [
            "rotated",
            "grace",
            "reuse_detected",
            "user_changed",
            "idp_refused",
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
        match DECISIONS.iter().position(|&d| d == result) {
            Some(i) => self.decisions[i].inc(),
            None => self
                .auth_decisions
                .get_or_create(&ResultLabel { result })
                .inc(),
        };
    }

    /// Counts an answered request and its latency (`gatehouse_requests_total`,
    /// `gatehouse_request_duration_seconds`).
    pub fn request_done(&self, route: &RouteName, status: u16, seconds: f64) {
        let Some(series) = route.series(self) else {
            self.requests
                .get_or_create(&RouteStatus {
                    route: route.clone(),
                    status,
                })
                .inc();
            self.duration
                .get_or_create(&RouteLabel {
                    route: route.clone(),
                })
                .observe(seconds);
            return;
        };
        series.duration.observe(seconds);
        let slot = status
            .checked_sub(100)
            .and_then(|i| series.statuses.get(usize::from(i)));
        let counter = |status| {
            self.requests
                .get_or_create(&RouteStatus {
                    route: route.clone(),
                    status,
                })
                .clone()
        };
        match slot {
            Some(slot) => slot.get_or_init(|| counter(status)).inc(),
            None => counter(status).inc(),
        };
    }

    /// A login's outcome; `provider`: `local` for the password form, else the provider id.
    pub fn login(&self, result: &'static str, provider: &str) {
        let _ = self
            .logins
            .get_or_create(&LoginLabel {
                result,
                provider: provider.to_string(),
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn cached_series_count_into_the_right_metrics() {
        let a = Metrics::new();
        let b = Metrics::new();
        let app = RouteName::new("app");
        for _ in 0..3 {
            a.request_done(&app, 200, 0.001);
        }
        a.request_done(&app, 404, 0.001);
        a.request_done(&app, 999, 0.001);
        // A reload builds a new label with the same name: same series.
        a.request_done(&RouteName::new("app"), 200, 0.001);
        // The same label used with another gateway's metrics counts there, not in `a`.
        b.request_done(&app, 200, 0.001);
        a.auth_decision("allowed");
        a.auth_decision("allowed");
        a.auth_decision("refreshed");

        let text = a.encode();
        let count = |prefix: &str| line(&text, prefix).map(|l| l.rsplit(' ').next().unwrap());
        assert_eq!(
            count("gatehouse_requests_total{route=\"app\",status=\"200\"}"),
            Some("4")
        );
        assert_eq!(
            count("gatehouse_requests_total{route=\"app\",status=\"404\"}"),
            Some("1")
        );
        assert_eq!(
            count("gatehouse_requests_total{route=\"app\",status=\"999\"}"),
            Some("1")
        );
        assert_eq!(
            count("gatehouse_request_duration_seconds_count{route=\"app\"}"),
            Some("6")
        );
        assert_eq!(
            count("gatehouse_auth_decisions_total{result=\"allowed\"}"),
            Some("2")
        );
        assert_eq!(
            count("gatehouse_auth_decisions_total{result=\"refreshed\"}"),
            Some("1")
        );
        assert_eq!(
            count("gatehouse_auth_decisions_total{result=\"forbidden\"}"),
            Some("0")
        );

        let text = b.encode();
        assert!(
            line(
                &text,
                "gatehouse_requests_total{route=\"app\",status=\"200\"} 1"
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                "gatehouse_request_duration_seconds_count{route=\"app\"} 1"
            )
            .is_some(),
            "{text}"
        );
    }
}
