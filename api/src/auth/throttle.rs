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
            audits: RateLimiter::keyed(
                Quota::with_period(Duration::from_secs(10)).expect("non-zero"),
            ),
            blocked: Mutex::new(Default::default()),
        }
    }

    /// How long this IP must still wait, if it is throttled, in whole seconds rounded up:
    /// a client that honours `Retry-After` to the second must find the block lifted.
    pub fn retry_after(&self, ip: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let until = *blocked.get(&ip)?;
        let now = Instant::now();
        if until > now {
            Some(whole_seconds_up(until - now))
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
        Verdict {
            audit: self.audits.check_key(&ip).is_ok(),
        }
    }
}

fn whole_seconds_up(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(
            whole_seconds_up(Duration::from_millis(1_999)),
            Duration::from_secs(2)
        );
        assert_eq!(
            whole_seconds_up(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds_up(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn an_ip_is_blocked_once_over_its_quota_and_others_are_not() {
        let throttle = FailedAuthThrottle::new(3);
        for _ in 0..3 {
            throttle.record_failure(IP);
            assert!(throttle.retry_after(IP).is_none(), "within the quota");
        }
        throttle.record_failure(IP);
        let wait = throttle.retry_after(IP).expect("blocked over the quota");
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(wait.subsec_nanos(), 0);
        assert!(
            throttle
                .retry_after(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)))
                .is_none()
        );
    }

    #[test]
    fn only_the_first_failure_of_a_burst_is_audited() {
        let throttle = FailedAuthThrottle::new(1000);
        let audited = (0..50)
            .filter(|_| throttle.record_failure(IP).audit)
            .count();
        assert_eq!(audited, 1);
    }
}
