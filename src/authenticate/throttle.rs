//! Brute-force throttle (SPEC §3 `login`): failures are counted per canonical username and
//! per client IP within `failure_window`; reaching `max_failures` locks that key for
//! `lockout`. While locked, even the right password is refused (429), so a locked account
//! cannot be used as a password oracle.

use std::net::IpAddr;

use dashmap::DashMap;

/// Durations in seconds, as configured; the throttle keeps its times in milliseconds (`now`
/// is Unix milliseconds) and every window and lock ends at its instant.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub failure_window: u64,
    pub lockout: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    window_start: u64,
    failures: u32,
    locked_until: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Whole seconds until the lock lifts, rounded up: retrying then is never too early.
    pub retry_after: u64,
}

#[derive(Default)]
pub struct Throttle {
    counters: DashMap<Key, Counter>,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    fn keys(user: &str, ip: IpAddr) -> [Key; 2] {
        [Key::User(user.to_string()), Key::Ip(ip)]
    }

    /// Refuses the attempt if the user or the IP is locked.
    pub fn check(&self, user: &str, ip: IpAddr, now: u64) -> Result<(), Locked> {
        let retry_after = Self::keys(user, ip)
            .iter()
            .filter_map(|k| self.counters.get(k).map(|c| c.locked_until))
            .filter(|until| *until > now)
            .map(|until| (until - now).div_ceil(1000))
            .max();
        match retry_after {
            Some(retry_after) => Err(Locked { retry_after }),
            None => Ok(()),
        }
    }

    /// Counts a failure; returns the lock if this failure caused one.
    pub fn record_failure(
        &self,
        user: &str,
        ip: IpAddr,
        now: u64,
        policy: ThrottlePolicy,
    ) -> Option<Locked> {
        let mut locked = None;
        for key in Self::keys(user, ip) {
            let mut c = self.counters.entry(key).or_default();
            if now
                >= c.window_start
                    .saturating_add(crate::clock::ms(policy.failure_window))
            {
                c.window_start = now;
                c.failures = 0;
            }
            c.failures += 1;
            if c.failures >= policy.max_failures.max(1) {
                c.locked_until = now.saturating_add(crate::clock::ms(policy.lockout));
                c.failures = 0;
                locked = Some(Locked {
                    retry_after: policy.lockout,
                });
            }
        }
        locked
    }

    /// A successful login clears the user's counter (the IP's stays: one IP guessing many
    /// accounts, with one right guess, is still guessing).
    pub fn record_success(&self, user: &str) {
        self.counters.remove(&Key::User(user.to_string()));
    }

    pub fn sweep(&self, now: u64, policy: ThrottlePolicy) {
        self.counters.retain(|_, c| {
            c.locked_until > now
                || now
                    < c.window_start
                        .saturating_add(crate::clock::ms(policy.failure_window))
        });
    }
}

/// The shared keys of a login attempt in Redis: the user and the client IP.
fn shared_ids(user: &str, ip: IpAddr) -> [String; 2] {
    [format!("u:{user}"), format!("ip:{ip}")]
}

/// The check before a login: shared across replicas with Redis, local otherwise, and local
/// again if Redis cannot answer, so throttling never switches off.
pub async fn check(
    local: &Throttle,
    store: &crate::store::Store,
    user: &str,
    ip: IpAddr,
    now: u64,
) -> Result<(), Locked> {
    if let crate::store::Store::Redis(r) = store {
        if let Ok(shared) = r.throttle_locked(&shared_ids(user, ip)).await {
            return match shared {
                Some(retry_after) => Err(Locked { retry_after }),
                None => local.check(user, ip, now),
            };
        }
    }
    local.check(user, ip, now)
}

/// Counts a failed login, locally and (with Redis) across replicas; returns the lock if this
/// failure set one.
pub async fn failure(
    local: &Throttle,
    store: &crate::store::Store,
    user: &str,
    ip: IpAddr,
    now: u64,
    policy: ThrottlePolicy,
) -> Option<Locked> {
    let here = local.record_failure(user, ip, now, policy);
    if let crate::store::Store::Redis(r) = store {
        let shared = r
            .throttle_failure(
                &shared_ids(user, ip),
                policy.failure_window,
                policy.max_failures,
                policy.lockout,
            )
            .await;
        if let Ok(shared) = shared {
            return shared.map(|retry_after| Locked { retry_after }).or(here);
        }
    }
    here
}

/// A successful login clears the user's counters.
pub async fn success(local: &Throttle, store: &crate::store::Store, user: &str) {
    local.record_success(user);
    if let crate::store::Store::Redis(r) = store {
        let _ = r.throttle_success(&format!("u:{user}")).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        max_failures: 3,
        failure_window: 60,
        lockout: 600,
    };
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn the_nth_failure_locks_and_the_lock_expires() {
        let t = Throttle::new();
        assert_eq!(t.record_failure("alice", IP, 100000, POLICY), None);
        assert_eq!(t.record_failure("alice", IP, 101000, POLICY), None);
        assert!(t.check("alice", IP, 101000).is_ok());
        assert!(t.record_failure("alice", IP, 102000, POLICY).is_some());
        assert_eq!(
            t.check("alice", IP, 103000),
            Err(Locked { retry_after: 599 })
        );
        assert!(t.check("alice", IP, 702000).is_ok());
    }

    #[test]
    fn a_lock_ends_at_its_instant_to_the_millisecond() {
        let t = Throttle::new();
        for at in [0, 1, 2] {
            t.record_failure("carol", IP, 10_000 + at, POLICY);
        }
        // Locked at 10.002 s for 600 s: until 610.002 s, not a second later.
        assert_eq!(
            t.check("carol", IP, 610_001),
            Err(Locked { retry_after: 1 })
        );
        assert!(t.check("carol", IP, 610_002).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = Throttle::new();
        t.record_failure("bob", IP, 0, POLICY);
        t.record_failure("bob", IP, 1000, POLICY);
        assert_eq!(t.record_failure("bob", IP, 100000, POLICY), None);
    }

    #[test]
    fn an_ip_guessing_many_users_is_locked() {
        let t = Throttle::new();
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 9));
        t.record_failure("u1", IP, 0, POLICY);
        t.record_failure("u2", IP, 0, POLICY);
        t.record_failure("u3", IP, 0, POLICY);
        assert!(t.check("u4", IP, 1000).is_err());
        assert!(t.check("u4", other, 1000).is_ok());
    }
}
