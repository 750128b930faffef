//! Per-key rate limits, with no I/O: the policy of a key (its plan's [`RateLimit`], or a
//! custom one on the key), fixed windows, and what one instance does with its share of a
//! window ([`Local`]). The DynamoDB adapter ([`store`]) leases tokens from a per-key window
//! item; the HTTP middleware (`crate::http::ratelimit`) runs the steps.
//!
//! **Windows.** A policy admits `quota` requests (its burst) per fixed window of
//! `window_secs = burst / rate` seconds, aligned to the Unix epoch: `rate` per second
//! sustained.
//!
//! **Across instances.** Each instance leases tokens from the key's window item in
//! DynamoDB with one conditional update that never lets the window's count pass the quota,
//! and admits requests from its leased tokens without another call. Its leases start at one
//! token each window and double with each lease, up to a tenth of the quota (`batch`), so
//! an instance that serves few requests holds few tokens: one that served `k` requests in a
//! window strands fewer than `k + 1`. When a lease no longer fits, it leases one token at a
//! time; when none fits, it refuses until the window ends, without calling DynamoDB again.
//! So while DynamoDB answers, **a window admits at most `quota` requests whatever the
//! number of instances** (tokens leased and unused are lost, never lent twice): over any
//! `T` seconds at most `rate × T + 2 × quota` (two windows' boundaries).
//!
//! **Faults.** A lease that fails (DynamoDB unreachable, throttled) fails *open*: the
//! instance admits up to `quota` requests of its own for the rest of that window only, then
//! asks DynamoDB again in the next. A fault therefore never turns a request into a 5xx, and
//! while it lasts each instance admits at most one quota per window (`N` instances: at most
//! `N × quota`).

pub mod store;

use crate::catalog::{RateLimit, Tier};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long an instance trusts the plan it read for an account: a plan change moves the
/// account's limits within this.
pub const PLAN_TTL: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 10_000;

/// One instance's limiter state: its share of each key's window, and each account's plan.
#[derive(Debug, Clone)]
pub struct Limiter {
    locals: moka::sync::Cache<String, Arc<Mutex<Local>>>,
    plans: moka::sync::Cache<String, Tier>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            // A key idle for a window's length has nothing left to remember.
            locals: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(Duration::from_secs(300))
                .build(),
            plans: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(PLAN_TTL)
                .build(),
        }
    }
}

impl Limiter {
    /// The instance's share of `key_hash`'s windows. Its lock is held across a lease, so
    /// concurrent requests of one key on one instance wait for the lease in flight instead of
    /// racing to lease the window away.
    pub fn local(&self, key_hash: &str) -> Arc<Mutex<Local>> {
        self.locals.get_with(key_hash.to_string(), || {
            Arc::new(Mutex::new(Local::default()))
        })
    }

    /// The plan last read for `account`, if still fresh.
    pub fn plan(&self, account: &str) -> Option<Tier> {
        self.plans.get(account)
    }

    pub fn remember_plan(&self, account: &str, tier: Tier) {
        self.plans.insert(account.to_string(), tier);
    }
}

/// What one key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The plan's name (`free`, `pro`, `enterprise`), or `custom` for a key's own limit.
    pub name: &'static str,
    /// Requests per window.
    pub quota: u32,
    pub window_secs: u32,
}

/// A window: its index since the epoch and when it ends (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: i64,
    pub ends_ms: i64,
}

impl Window {
    /// Whole seconds until the window ends, at least 1: when a refused request may retry.
    pub fn reset_secs(&self, now_ms: i64) -> u64 {
        let left = (self.ends_ms - now_ms).max(0);
        u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)
    }
}

impl Policy {
    pub fn new(name: &'static str, limit: RateLimit) -> Self {
        let rate = limit.rate.max(1);
        let quota = limit.burst.max(rate);
        Self {
            name,
            quota,
            window_secs: (quota / rate).max(1),
        }
    }

    /// The largest lease: a tenth of the quota, at least one.
    pub fn batch(&self) -> u32 {
        (self.quota / 10).max(1)
    }

    pub fn window(&self, now_ms: i64) -> Window {
        let length = i64::from(self.window_secs) * 1000;
        let index = now_ms.div_euclid(length);
        Window {
            index,
            ends_ms: (index + 1) * length,
        }
    }

    /// The `RateLimit-Policy` header (IETF httpapi ratelimit-headers): `"free";q=20;w=4`.
    pub fn policy_header(&self) -> String {
        format!("\"{}\";q={};w={}", self.name, self.quota, self.window_secs)
    }

    /// The `RateLimit` header: `"free";r=<remaining>;t=<seconds to reset>`.
    pub fn state_header(&self, remaining: u32, reset_secs: u64) -> String {
        format!("\"{}\";r={remaining};t={reset_secs}", self.name)
    }
}

/// What a lease of tokens from the key's window item came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The tokens are this instance's; the window's count is now `used`.
    Granted { tokens: u32, used: u32 },
    /// They would pass the quota: nothing was leased.
    Refused { tokens: u32 },
    /// DynamoDB did not answer.
    Failed,
}

/// What to do with a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Admit it; `remaining` is the window's budget left as this instance knows it.
    Admit { remaining: u32 },
    /// Lease this many tokens first, then step again.
    Lease { tokens: u32 },
    /// Refuse it (429) until the window ends.
    Refuse,
}

/// One instance's share of one key's current window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    window: i64,
    /// Leased tokens not used yet.
    tokens: u32,
    /// The window's count after this instance's last lease.
    used: u32,
    /// The next lease's size (0: one token): doubles with each lease, up to the batch.
    size: u32,
    /// A full batch no longer fits: lease one token at a time.
    single: bool,
    /// Not even one token fits: refuse until the window ends.
    exhausted: bool,
    /// A lease failed: admit up to a quota of our own in this window.
    open: bool,
    admitted_open: u32,
}

impl Local {
    fn enter(&mut self, window: i64) {
        if self.window != window {
            *self = Local {
                window,
                ..Local::default()
            };
        }
    }

    /// The next step for a request in `window`.
    pub fn step(&mut self, policy: &Policy, window: i64) -> Step {
        self.enter(window);
        if self.tokens > 0 {
            self.tokens -= 1;
            let remaining = policy.quota.saturating_sub(self.used) + self.tokens;
            return Step::Admit { remaining };
        }
        if self.open {
            if self.admitted_open < policy.quota {
                self.admitted_open += 1;
                return Step::Admit {
                    remaining: policy.quota - self.admitted_open,
                };
            }
            return Step::Refuse;
        }
        if self.exhausted {
            return Step::Refuse;
        }
        Step::Lease {
            tokens: if self.single {
                1
            } else {
                self.size.clamp(1, policy.batch())
            },
        }
    }

    /// Records what a lease asked in `window` came to.
    pub fn leased(&mut self, window: i64, lease: Lease) {
        self.enter(window);
        match lease {
            Lease::Granted { tokens, used } => {
                self.tokens += tokens;
                self.used = self.used.max(used);
                self.size = tokens.saturating_mul(2);
            }
            Lease::Refused { tokens } if tokens > 1 => self.single = true,
            Lease::Refused { .. } => self.exhausted = true,
            Lease::Failed => self.open = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FREE: RateLimit = RateLimit { rate: 5, burst: 20 };

    #[test]
    fn a_policy_is_its_burst_per_window_of_burst_over_rate_seconds() {
        let p = Policy::new("free", FREE);
        assert_eq!((p.quota, p.window_secs, p.batch()), (20, 4, 2));
        assert_eq!(p.policy_header(), "\"free\";q=20;w=4");
        assert_eq!(p.state_header(13, 3), "\"free\";r=13;t=3");
        let w = p.window(10_500);
        assert_eq!(
            w,
            Window {
                index: 2,
                ends_ms: 12_000
            }
        );
        assert_eq!(w.reset_secs(10_500), 2);
        assert_eq!(w.reset_secs(11_999), 1);
        assert_eq!(p.window(12_000).index, 3);
        // A limit whose burst is below its rate still admits its rate per second.
        let odd = Policy::new("custom", RateLimit { rate: 10, burst: 3 });
        assert_eq!((odd.quota, odd.window_secs), (10, 1));
    }

    /// Runs `n` requests through `local` against a shared window count `used`, leasing as a
    /// window item would; returns how many were admitted.
    fn run(local: &mut Local, p: &Policy, window: i64, used: &mut u32, n: u32) -> u32 {
        let mut admitted = 0;
        for _ in 0..n {
            loop {
                match local.step(p, window) {
                    Step::Admit { .. } => {
                        admitted += 1;
                        break;
                    }
                    Step::Refuse => break,
                    Step::Lease { tokens } => {
                        let lease = if *used + tokens <= p.quota {
                            *used += tokens;
                            Lease::Granted {
                                tokens,
                                used: *used,
                            }
                        } else {
                            Lease::Refused { tokens }
                        };
                        local.leased(window, lease);
                    }
                }
            }
        }
        admitted
    }

    #[test]
    fn instances_sharing_a_window_admit_no_more_than_its_quota() {
        let p = Policy::new(
            "pro",
            RateLimit {
                rate: 50,
                burst: 200,
            },
        );
        let mut used = 0;
        let mut instances: Vec<Local> = (0..7).map(|_| Local::default()).collect();
        let mut admitted = 0;
        for round in 0..100 {
            let i = round % instances.len();
            admitted += run(&mut instances[i], &p, 1, &mut used, 5);
        }
        assert!(admitted <= p.quota, "{admitted}");
        // Single-token leases use up what full batches left over.
        assert_eq!(used, p.quota);
        // Each instance holds fewer than a batch unused.
        assert!(admitted + 7 * p.batch() >= p.quota, "{admitted}");
        // A new window starts afresh.
        let mut next_used = 0;
        assert_eq!(run(&mut instances[0], &p, 2, &mut next_used, 3), 3);
    }

    #[test]
    fn a_refused_window_costs_no_more_leases_and_headers_count_down() {
        let p = Policy::new("free", FREE);
        let mut local = Local::default();
        let mut used = 0;
        assert_eq!(run(&mut local, &p, 7, &mut used, 25), 20);
        assert_eq!(local.step(&p, 7), Step::Refuse, "no lease asked");
        let mut fresh = Local::default();
        assert_eq!(fresh.step(&p, 8), Step::Lease { tokens: 1 });
        fresh.leased(8, Lease::Granted { tokens: 1, used: 1 });
        assert_eq!(fresh.step(&p, 8), Step::Admit { remaining: 19 });
        assert_eq!(fresh.step(&p, 8), Step::Lease { tokens: 2 });
        fresh.leased(8, Lease::Granted { tokens: 2, used: 3 });
        assert_eq!(fresh.step(&p, 8), Step::Admit { remaining: 18 });
        assert_eq!(fresh.step(&p, 8), Step::Admit { remaining: 17 });
    }

    #[test]
    fn a_failed_lease_fails_open_for_one_quota_in_that_window_only() {
        let p = Policy::new("free", FREE);
        let mut local = Local::default();
        assert_eq!(local.step(&p, 3), Step::Lease { tokens: 1 });
        local.leased(3, Lease::Failed);
        let admitted = (0..30)
            .filter(|_| matches!(local.step(&p, 3), Step::Admit { .. }))
            .count();
        assert_eq!(admitted, 20, "one quota of its own, no more");
        // The next window asks DynamoDB again.
        assert_eq!(local.step(&p, 4), Step::Lease { tokens: 1 });
    }

    #[test]
    fn leases_grow_with_an_instances_demand_so_a_quiet_one_strands_little() {
        let p = Policy::new(
            "pro",
            RateLimit {
                rate: 50,
                burst: 200,
            },
        );
        // A hundred short-lived instances serving one request each: each leases one token,
        // so together they take a hundred of the window's 200, not the whole window.
        let mut used = 0;
        for _ in 0..100 {
            assert_eq!(run(&mut Local::default(), &p, 1, &mut used, 1), 1);
        }
        assert_eq!(used, 100);
        // A busy instance's leases double: 1, 2, 4, 8, 16, then the batch (20) each time.
        let mut busy = Local::default();
        let mut used = 0;
        let mut sizes = Vec::new();
        for _ in 0..60 {
            if let Step::Lease { tokens } = busy.clone().step(&p, 1) {
                sizes.push(tokens);
            }
            run(&mut busy, &p, 1, &mut used, 1);
        }
        assert_eq!(sizes, [1, 2, 4, 8, 16, 20, 20]);
    }
}
