//! Counters, gauges and histograms, rendered as Prometheus text.
//!
//! Everything is a relaxed atomic: recording costs one uncontended add, and
//! `/metrics` reads a consistent-enough snapshot.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the histogram in Prometheus text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// A counter with one label, over a fixed set of label values.
#[derive(Debug)]
pub struct LabeledCounter {
    labels: &'static [&'static str],
    values: Vec<AtomicU64>,
}

impl LabeledCounter {
    /// A counter with these label values, all zero.
    pub fn new(labels: &'static [&'static str]) -> Self {
        Self {
            labels,
            values: labels.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds one to `label` (unknown labels are ignored).
    pub fn inc(&self, label: &str) {
        if let Some(i) = self.labels.iter().position(|l| *l == label) {
            self.values[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Current value of `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.labels
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.values[i].load(Ordering::Relaxed))
    }

    /// Writes the counter in Prometheus text format.
    pub fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, v) in self.labels.iter().zip(&self.values) {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{l}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// Login outcomes, the label values of `wsgate_logins_total`.
pub const LOGIN_OUTCOMES: &[&str] = &[
    "ok",
    "invalid_credentials",
    "rate_limited",
    "overloaded",
    "unavailable",
    "bad_request",
    "forbidden",
];

/// HTTP statuses counted by `wsgate_http_responses_total`.
pub const HTTP_STATUSES: &[&str] = &[
    "101", "200", "204", "400", "401", "403", "404", "405", "408", "413", "415", "426", "429",
    "500", "503",
];

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Logins by outcome.
    pub logins: LabeledCounter,
    /// HTTP responses by status.
    pub http_responses: LabeledCounter,
    /// Sessions created.
    pub sessions_created: AtomicU64,
    /// Sessions ended by logout, revocation or protection.
    pub sessions_revoked: AtomicU64,
    /// Sessions removed by the expiry sweep.
    pub sessions_expired: AtomicU64,
    /// Sessions stored, as of the last sweep.
    pub sessions_stored: AtomicU64,
    /// Open TCP connections.
    pub connections_open: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            logins: LabeledCounter::new(LOGIN_OUTCOMES),
            http_responses: LabeledCounter::new(HTTP_STATUSES),
            sessions_created: AtomicU64::new(0),
            sessions_revoked: AtomicU64::new(0),
            sessions_expired: AtomicU64::new(0),
            sessions_stored: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
        }
    }
}

/// Writes a single-value metric.
pub fn render_value(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Reads an atomic.
pub fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_cumulative_buckets() {
        let h = Histogram::new();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(100));
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "test");
        assert!(s.contains("x_seconds_bucket{le=\"0.0025\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"0.025\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_count 3\n"), "{s}");
    }

    #[test]
    fn labeled_counter() {
        let c = LabeledCounter::new(LOGIN_OUTCOMES);
        c.inc("ok");
        c.inc("ok");
        c.inc("nonsense");
        assert_eq!(c.get("ok"), 2);
        let mut s = String::new();
        c.render(&mut s, "l_total", "outcome", "h");
        assert!(s.contains("l_total{outcome=\"ok\"} 2\n"));
        assert!(s.contains("l_total{outcome=\"overloaded\"} 0\n"));
    }
}
