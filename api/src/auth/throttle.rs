//! Brute-force defence: a client IP that keeps failing to authenticate is refused (429)
//! for a while, right or wrong token, and its failures are audited sparingly.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct FailedAuthThrottle {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    audits: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<std::collections::HashMap<IpAddr, Instant>>,
}

/// What to do with a failed authentication.
pub struct Verdict {
    /// Write an `auth.denied` audit event for this one.
    pub audit: bool,
}

impl FailedAuthThrottle {
    pub fn new(failures_per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(failures_per_minute.max(1)).expect("at least 1");
        Self {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            // One audited denial per IP per ten seconds is enough to see a storm.
            audits: RateLimiter::keyed(Quota::with_period(Duration::from_secs(10)).expect("non-zero")),
            blocked: Mutex::new(Default::default()),
        }
    }

    /// How long this IP must still wait, if it is throttled.
    pub fn retry_after(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&ip);
            None
        }
    }

    /// Counts one failure. Once the IP exceeds its quota it is blocked until the quota
    /// has room again.
    pub fn record_failure(&self, ip: IpAddr) -> Verdict {
        if let Err(not_until) = self.failures.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut blocked = self.blocked.lock().expect("not poisoned");
            // Forget stale entries so the map cannot grow without bound.
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            blocked.insert(ip, now + wait.max(Duration::from_secs(1)));
        }
        self.failures.retain_recent();
        Verdict { audit: self.audits.check_key(&ip).is_ok() }
    }
}
