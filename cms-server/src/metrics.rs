//! HTTP metrics: lock-free counters by route template, method and status, and a
//! latency histogram by route, written in the Prometheus text format with the driver
//! metrics of every provider.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cms_core::layers::{DriverMetrics, Histogram};

use crate::frontends::{cimi, ec2, native::routes};

/// Every path template counted: the native API's routes, then the EC2 frontend's
/// `/ec2`, the CIMI frontend's `/cimi`, then `unmatched`. A template's position is its
/// index in [`HttpMetrics`].
pub fn templates() -> Vec<&'static str> {
    let mut t = routes::templates().to_vec();
    t.push(ec2::PREFIX);
    t.push(cimi::PREFIX);
    t.push(routes::UNMATCHED);
    t
}

/// The template with index `i` (`unmatched` past the last).
pub fn template_name(i: usize) -> &'static str {
    let t = routes::templates();
    match t.get(i) {
        Some(name) => name,
        None if i == t.len() => ec2::PREFIX,
        None if i == t.len() + 1 => cimi::PREFIX,
        None => routes::UNMATCHED,
    }
}

/// The metrics index of the EC2 frontend's requests.
pub fn ec2_template() -> usize {
    routes::templates().len()
}

/// The metrics index of the CIMI frontend's requests.
pub fn cimi_template() -> usize {
    routes::templates().len() + 1
}

/// The metrics index of requests no route matched.
pub fn unmatched_template() -> usize {
    routes::templates().len() + 2
}

/// Methods counted by name; others are counted as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "OTHER",
];

/// Statuses counted by code; others are counted under their class (`2xx`…).
const STATUSES: [u16; 19] = [
    200, 201, 202, 204, 400, 401, 403, 404, 405, 409, 411, 413, 415, 429, 500, 501, 502, 503, 504,
];
const STATUS_SLOTS: usize = STATUSES.len() + 5;

fn method_index(m: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_index(s: u16) -> usize {
    match STATUSES.iter().position(|x| *x == s) {
        Some(i) => i,
        None => STATUSES.len() + (usize::from(s / 100).clamp(1, 5) - 1),
    }
}

fn status_label(i: usize) -> String {
    if i < STATUSES.len() {
        STATUSES[i].to_string()
    } else {
        format!("{}xx", i - STATUSES.len() + 1)
    }
}

/// The server's HTTP counters.
pub struct HttpMetrics {
    templates: Vec<&'static str>,
    /// templates × methods × statuses.
    requests: Vec<AtomicU64>,
    latency: Vec<Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

impl HttpMetrics {
    /// Counters for every template of [`templates`].
    pub fn new() -> Self {
        let templates = templates();
        let n = templates.len() * METHODS.len() * STATUS_SLOTS;
        HttpMetrics {
            requests: (0..n).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..templates.len()).map(|_| Histogram::default()).collect(),
            templates,
        }
    }

    /// Counts one request to the template with index `template`.
    pub fn record(&self, template: usize, method: &http::Method, status: u16, elapsed: Duration) {
        let t = template.min(self.templates.len() - 1);
        let i = (t * METHODS.len() + method_index(method)) * STATUS_SLOTS + status_index(status);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
        self.latency[t].observe(elapsed);
    }

    /// Writes the HTTP metrics, then the driver metrics of `drivers`.
    pub fn write_prometheus<'a>(
        &self,
        out: &mut String,
        drivers: impl Iterator<Item = &'a DriverMetrics>,
    ) {
        out.push_str(
            "# HELP cms_http_requests_total HTTP requests by route template, method and status.\n\
             # TYPE cms_http_requests_total counter\n",
        );
        for (t, template) in self.templates.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..STATUS_SLOTS {
                    let n = self.requests[(t * METHODS.len() + m) * STATUS_SLOTS + s]
                        .load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "cms_http_requests_total{{route=\"{template}\",method=\"{method}\",status=\"{}\"}} {n}",
                            status_label(s)
                        );
                    }
                }
            }
        }
        out.push_str(
            "# HELP cms_http_request_duration_seconds HTTP request latency by route template.\n\
             # TYPE cms_http_request_duration_seconds histogram\n",
        );
        for (t, template) in self.templates.iter().enumerate() {
            let h = &self.latency[t];
            if h.count() > 0 {
                h.write_prometheus(
                    out,
                    "cms_http_request_duration_seconds",
                    &format!("route=\"{template}\""),
                );
            }
        }
        DriverMetrics::write_prometheus_header(out);
        for d in drivers {
            d.write_prometheus(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_method_status() {
        let m = HttpMetrics::new();
        m.record(0, &http::Method::GET, 200, Duration::from_millis(1));
        m.record(0, &http::Method::GET, 200, Duration::from_millis(1));
        m.record(0, &http::Method::PUT, 418, Duration::from_millis(1));
        let mut out = String::new();
        m.write_prometheus(&mut out, std::iter::empty());
        assert!(out.contains(
            "cms_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(out.contains(
            "cms_http_requests_total{route=\"/healthz\",method=\"PUT\",status=\"4xx\"} 1"
        ));
        assert!(out.contains("cms_http_request_duration_seconds_count{route=\"/healthz\"} 3"));
    }
}
