//! Per-tenant request rate limits: one token bucket per tenant and route class.
//!
//! Requests are of two classes: **read** (the native API's `GET` and `HEAD`, EC2's
//! `Describe*` and `Get*` actions) and **write** (everything else: creates, actions,
//! tag changes, deletes, imports). A class's limit is a token bucket: `burst`
//! requests at once, then `per_second` on average; a request that finds the bucket
//! empty is refused before anything is done (the native API answers 429 with
//! `Retry-After`, the EC2 API `RequestLimitExceeded`, as AWS does) and takes no
//! token. Requests that fail authentication are not counted against anyone.
//!
//! The configuration's `[rate_limits]` applies to every tenant (the development tenant
//! too); a tenant's own `[tenants.rate_limits]` replaces it class by class. Each
//! replica counts the requests it serves: with several replicas behind a balancer a
//! tenant may reach the limit on each of them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{RateConfig, RateLimitsConfig};

/// What a request does, for its rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// Looks only: listings, gets, consoles.
    Read,
    /// Changes something.
    Write,
}

impl RouteClass {
    /// The class of a native API request.
    pub fn of_method(method: &http::Method) -> RouteClass {
        if *method == http::Method::GET || *method == http::Method::HEAD {
            RouteClass::Read
        } else {
            RouteClass::Write
        }
    }

    /// The class of an EC2 action.
    pub fn of_ec2_action(action: &str) -> RouteClass {
        if action.starts_with("Describe") || action.starts_with("Get") {
            RouteClass::Read
        } else {
            RouteClass::Write
        }
    }

    /// `read` or `write`, as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Write => "write",
        }
    }
}

/// One class's bucket.
#[derive(Debug)]
struct Bucket {
    rate: RateConfig,
    /// Tokens left, and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: RateConfig, now: Instant) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new((f64::from(rate.burst), now)),
        }
    }

    /// Takes a token, or answers how long until there is one.
    fn take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, since) = *state;
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        let tokens = (tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64(
                (1.0 - tokens) / self.rate.per_second,
            ))
        }
    }
}

/// A tenant's rate limits, one bucket per class that has a limit.
#[derive(Debug, Default)]
pub struct RateLimits {
    read: Option<Bucket>,
    write: Option<Bucket>,
}

/// A request refused by its tenant's rate limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limited {
    /// The request's class.
    pub class: RouteClass,
    /// The limit it went over.
    pub rate: RateConfig,
    /// How long until a request of this class would be let through.
    pub retry_after: Duration,
}

impl Limited {
    /// The error a refused request gets: `RateLimited` with its retry-after, which
    /// each frontend maps as it maps a backend's rate limit (429 with `Retry-After`,
    /// EC2's `RequestLimitExceeded`).
    pub fn error(&self, tenant: &str) -> cms_core::Error {
        cms_core::Error::new(cms_core::ErrorKind::RateLimited, self.message(tenant))
            .with_retry_after(self.retry_after)
    }

    /// What the client is told.
    pub fn message(&self, tenant: &str) -> String {
        format!(
            "tenant `{tenant}` is over its rate limit for {} requests ({} per second, bursts of \
             {}): retry in {:.1} s",
            self.class.as_str(),
            self.rate.per_second,
            self.rate.burst,
            self.retry_after.as_secs_f64()
        )
    }
}

impl RateLimits {
    /// The limits of a tenant: its own, class by class, else the server's.
    pub fn new(server: &RateLimitsConfig, own: &RateLimitsConfig) -> RateLimits {
        let now = Instant::now();
        RateLimits {
            read: own.read.or(server.read).map(|r| Bucket::new(r, now)),
            write: own.write.or(server.write).map(|r| Bucket::new(r, now)),
        }
    }

    /// Counts a request of `class`; `Err` when it goes over the limit.
    pub fn check(&self, class: RouteClass) -> Result<(), Limited> {
        let bucket = match class {
            RouteClass::Read => &self.read,
            RouteClass::Write => &self.write,
        };
        let Some(b) = bucket else {
            return Ok(());
        };
        b.take(Instant::now()).map_err(|retry_after| Limited {
            class,
            rate: b.rate,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> RateConfig {
        RateConfig { per_second, burst }
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_the_rate() {
        let t0 = Instant::now();
        let b = Bucket::new(rate(2.0, 3), t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(t1).is_ok());
        assert!(b.take(t1).is_err());
        // Refusals take nothing: a second later two are back.
        let t2 = t1 + Duration::from_secs(1);
        assert!(b.take(t2).is_ok() && b.take(t2).is_ok());
        assert!(b.take(t2).is_err());
        // Never more than the burst, however long it was idle.
        let t3 = t2 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.take(t3).is_ok());
        }
        assert!(b.take(t3).is_err());
    }

    #[test]
    fn a_tenants_own_limits_replace_the_servers_class_by_class() {
        let server = RateLimitsConfig {
            read: Some(rate(100.0, 1)),
            write: Some(rate(100.0, 1)),
        };
        let own = RateLimitsConfig {
            read: None,
            write: Some(rate(100.0, 2)),
        };
        let l = RateLimits::new(&server, &own);
        assert!(l.check(RouteClass::Read).is_ok());
        let e = l.check(RouteClass::Read).expect_err("server's read limit");
        assert_eq!(e.rate, rate(100.0, 1));
        assert!(l.check(RouteClass::Write).is_ok() && l.check(RouteClass::Write).is_ok());
        let e = l.check(RouteClass::Write).expect_err("own write limit");
        assert_eq!((e.class, e.rate), (RouteClass::Write, rate(100.0, 2)));
        assert!(e
            .message("alice")
            .contains("write requests (100 per second, bursts of 2)"));
        // No limit configured: nothing is refused.
        let none = RateLimits::new(&RateLimitsConfig::default(), &RateLimitsConfig::default());
        for _ in 0..1000 {
            assert!(none.check(RouteClass::Write).is_ok());
        }
    }

    #[test]
    fn classes() {
        assert_eq!(RouteClass::of_method(&http::Method::GET), RouteClass::Read);
        assert_eq!(
            RouteClass::of_method(&http::Method::PATCH),
            RouteClass::Write
        );
        assert_eq!(
            RouteClass::of_ec2_action("DescribeInstances"),
            RouteClass::Read
        );
        assert_eq!(
            RouteClass::of_ec2_action("GetConsoleOutput"),
            RouteClass::Read
        );
        assert_eq!(RouteClass::of_ec2_action("RunInstances"), RouteClass::Write);
    }
}
