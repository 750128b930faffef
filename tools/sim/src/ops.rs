//! What the simulated world's actors do, and the faults each step carries: all drawn from the
//! seed before the step runs, so a seed names one sequence of operations and faults.

use devkit::faults::DynamoFault;
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

/// End users of every account: the same ids in each account, so a leak between accounts
/// shows as a wrong number rather than an unknown user.
pub const USERS: [&str; 3] = ["u1", "u2", "u3"];
pub const TIERS: [&str; 2] = ["pro", "enterprise"];
pub const PACKS: [&str; 3] = ["single", "medium", "pro"];
/// Documents end users open: few, so access requests overlap.
pub const DOCS: u32 = 8;

pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

/// How a Checkout page is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pay {
    /// 4242 4242 4242 4242.
    Card,
    /// 4000 0000 0000 0002: declined.
    Declined,
    /// The page is never submitted (the session expires after 24 hours).
    Abandoned,
}

/// Whose plan or credits: the account itself (`None`) or one of its end users.
pub type User = Option<usize>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A subscription Checkout, in one tab or two at once (each paid as `pay`).
    Checkout {
        account: usize,
        user: User,
        tier: &'static str,
        pay: Pay,
        tabs: u8,
    },
    Report {
        account: usize,
        user: usize,
        pay: Pay,
    },
    Pack {
        account: usize,
        user: usize,
        pack: &'static str,
        pay: Pay,
    },
    /// `burst` concurrent access requests for overlapping document sets.
    Access {
        account: usize,
        user: usize,
        docs: Vec<Vec<u32>>,
    },
    Analysis {
        account: usize,
        user: User,
        doc: u32,
    },
    Chat {
        account: usize,
        user: User,
        doc: u32,
    },
    ServerCreate {
        account: usize,
        user: User,
        tier: &'static str,
    },
    Upgrade {
        account: usize,
        user: User,
        tier: &'static str,
    },
    Cancel {
        account: usize,
        user: User,
    },
    Reactivate {
        account: usize,
        user: User,
    },
    /// Cancel at period end on the Customer Portal's page.
    PortalCancel {
        account: usize,
        user: User,
    },
    /// The card on file is replaced (portal page) by one whose charges fail: the next
    /// renewal fails.
    PortalFailingCard {
        account: usize,
        user: User,
    },
    /// Time passes (renewals, failed renewals, period ends, expiries).
    Advance {
        seconds: i64,
    },
    /// The scheduled reconciler runs.
    Reconcile,
    /// An account tries to change another account's subscription by its id.
    CrossProbe {
        account: usize,
        victim: usize,
        user: User,
    },
    /// Reads of balance, history, usage and subscription.
    Read {
        account: usize,
        user: usize,
    },
}

/// A Stripe fault for one step: the emulator fails the next matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeFault {
    pub method: &'static str,
    pub path_prefix: &'static str,
    /// `before` (a 5xx, no effect) or `after` (the effect, then the answer lost).
    pub when: &'static str,
    pub status: u16,
}

impl StripeFault {
    pub fn kind(&self) -> &'static str {
        match self.when {
            "after" => "stripe_lost_response",
            _ => "stripe_5xx",
        }
    }
}

/// A DynamoDB fault for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFault {
    pub operation: Option<&'static str>,
    pub fault: DynamoFault,
    pub skip: u32,
    pub count: u32,
}

/// The faults one step carries (each may or may not fire: a fault armed for a call the step
/// never makes does nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    pub stripe: Option<StripeFault>,
    pub dynamo: Option<DbFault>,
    /// The first attempt's handler is dropped at this pending poll.
    pub kill_at: Option<u32>,
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.stripe.is_none() && self.dynamo.is_none() && self.kill_at.is_none()
    }
}

/// One step: an operation, its faults, and how its client behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub op: Op,
    pub faults: Faults,
    /// Whether the client sends an Idempotency-Key (and so retries with it).
    pub keyed: bool,
}

impl Op {
    /// The Stripe calls this operation's requests make (where a Stripe fault can land).
    fn stripe_calls(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Op::Checkout { .. } => &[
                ("POST", "/v1/customers"),
                ("GET", "/v1/subscriptions"),
                ("POST", "/v1/checkout/sessions"),
            ],
            Op::Report { .. } | Op::Pack { .. } => {
                &[("POST", "/v1/customers"), ("POST", "/v1/checkout/sessions")]
            }
            Op::ServerCreate { .. } => &[
                ("GET", "/v1/customers"),
                ("GET", "/v1/subscriptions"),
                ("POST", "/v1/subscriptions"),
            ],
            Op::Upgrade { .. } => &[
                ("GET", "/v1/subscriptions"),
                ("POST", "/v1/invoices"),
                ("POST", "/v1/subscriptions"),
            ],
            Op::Cancel { .. } | Op::Reactivate { .. } | Op::CrossProbe { .. } => {
                &[("GET", "/v1/subscriptions"), ("POST", "/v1/subscriptions")]
            }
            Op::PortalCancel { .. } | Op::PortalFailingCard { .. } => {
                &[("POST", "/v1/billing_portal/sessions")]
            }
            Op::Reconcile => &[
                ("GET", "/v1/events"),
                ("GET", "/v1/subscriptions"),
                ("GET", "/v1/checkout/sessions"),
            ],
            _ => &[],
        }
    }
}

const DYNAMO_OPS: [Option<&str>; 7] = [
    None,
    Some("TransactWriteItems"),
    Some("UpdateItem"),
    Some("PutItem"),
    Some("GetItem"),
    Some("BatchGetItem"),
    Some("Query"),
];

fn pick<T: Copy>(rng: &mut Xoshiro256PlusPlus, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A subject for plan operations: the account itself or its first end user (few subjects,
/// so operations on one plan meet).
fn user(rng: &mut Xoshiro256PlusPlus) -> User {
    if rng.random_bool(0.4) { None } else { Some(0) }
}

fn pay(rng: &mut Xoshiro256PlusPlus) -> Pay {
    match rng.random_range(0..10) {
        0..=6 => Pay::Card,
        7 => Pay::Declined,
        _ => Pay::Abandoned,
    }
}

fn docs(rng: &mut Xoshiro256PlusPlus) -> Vec<u32> {
    let n = rng.random_range(1..=3);
    (0..n).map(|_| rng.random_range(0..DOCS)).collect()
}

/// Draws the next step.
pub fn draw(rng: &mut Xoshiro256PlusPlus, accounts: usize) -> Step {
    let account = rng.random_range(0..accounts);
    let op = match rng.random_range(0..100) {
        0..=11 => Op::Checkout {
            account,
            user: user(rng),
            tier: pick(rng, &TIERS),
            pay: pay(rng),
            tabs: if rng.random_bool(0.2) { 2 } else { 1 },
        },
        12..=17 => Op::Report {
            account,
            user: rng.random_range(0..USERS.len()),
            pay: pay(rng),
        },
        18..=27 => Op::Pack {
            account,
            user: rng.random_range(0..USERS.len()),
            pack: pick(rng, &PACKS),
            pay: pay(rng),
        },
        28..=41 => {
            let burst = if rng.random_bool(0.3) {
                rng.random_range(2..=4)
            } else {
                1
            };
            Op::Access {
                account,
                user: rng.random_range(0..USERS.len()),
                docs: (0..burst).map(|_| docs(rng)).collect(),
            }
        }
        42..=48 => Op::Analysis {
            account,
            user: user(rng),
            doc: rng.random_range(0..DOCS),
        },
        49..=52 => Op::Chat {
            account,
            user: user(rng),
            doc: rng.random_range(0..DOCS),
        },
        53..=56 => Op::ServerCreate {
            account,
            user: user(rng),
            tier: pick(rng, &TIERS),
        },
        57..=61 => Op::Upgrade {
            account,
            user: user(rng),
            tier: pick(rng, &TIERS),
        },
        62..=65 => Op::Cancel {
            account,
            user: user(rng),
        },
        66..=67 => Op::Reactivate {
            account,
            user: user(rng),
        },
        68..=70 => Op::PortalCancel {
            account,
            user: user(rng),
        },
        71..=72 => Op::PortalFailingCard {
            account,
            user: user(rng),
        },
        73..=84 => Op::Advance {
            seconds: match rng.random_range(0..10) {
                0..=3 => rng.random_range(1..=12) * HOUR,
                4..=7 => rng.random_range(1..=4) * DAY,
                _ => rng.random_range(25..=32) * DAY,
            },
        },
        85..=89 => Op::Reconcile,
        90..=92 if accounts > 1 => Op::CrossProbe {
            account,
            victim: (account + rng.random_range(1..accounts)) % accounts,
            user: user(rng),
        },
        _ => Op::Read {
            account,
            user: rng.random_range(0..USERS.len()),
        },
    };
    let mut faults = Faults::default();
    let calls = op.stripe_calls();
    if !calls.is_empty() && rng.random_bool(0.3) {
        let (method, path_prefix) = pick(rng, calls);
        let before = rng.random_bool(0.5);
        faults.stripe = Some(StripeFault {
            method,
            path_prefix,
            when: if before { "before" } else { "after" },
            status: pick(rng, &[500, 502, 503]),
        });
    }
    if rng.random_bool(0.15) {
        faults.dynamo = Some(DbFault {
            operation: pick(rng, &DYNAMO_OPS),
            fault: pick(rng, &DynamoFault::ALL),
            skip: rng.random_range(0..4),
            count: rng.random_range(1..=3),
        });
    }
    if rng.random_bool(0.08) {
        faults.kill_at = Some(rng.random_range(0..8));
    }
    Step {
        op,
        faults,
        keyed: rng.random_bool(0.8),
    }
}

/// How a webhook delivery travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered now, once.
    OnTime,
    /// Never delivered.
    Dropped,
    /// Delivered this many times (2–5).
    Duplicated(u8),
    /// Delivered once, this many seconds late (hours, or days past Stripe's retry window).
    Delayed(i64),
}

impl Fate {
    pub fn kind(self) -> &'static str {
        match self {
            Fate::OnTime => "webhook_on_time",
            Fate::Dropped => "webhook_dropped",
            Fate::Duplicated(_) => "webhook_duplicated",
            Fate::Delayed(_) => "webhook_delayed",
        }
    }
}

/// A DynamoDB fault for a batch of webhook deliveries, sometimes.
pub fn delivery_fault(rng: &mut Xoshiro256PlusPlus) -> Option<DbFault> {
    rng.random_bool(0.1).then(|| DbFault {
        operation: pick(rng, &DYNAMO_OPS),
        fault: pick(rng, &DynamoFault::ALL),
        skip: rng.random_range(0..4),
        count: rng.random_range(1..=2),
    })
}

/// Sometimes the webhook endpoint goes down for a while: hours it lasts.
pub fn outage(rng: &mut Xoshiro256PlusPlus) -> Option<i64> {
    rng.random_bool(0.04).then(|| rng.random_range(1..=36))
}

pub fn fate(rng: &mut Xoshiro256PlusPlus) -> Fate {
    match rng.random_range(0..100) {
        0..=59 => Fate::OnTime,
        60..=69 => Fate::Dropped,
        70..=84 => Fate::Duplicated(rng.random_range(2..=5)),
        85..=94 => Fate::Delayed(rng.random_range(1..=30) * HOUR),
        _ => Fate::Delayed(rng.random_range(4..=6) * DAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_seed_draws_the_same_steps_and_faults() {
        let draw_all = |seed| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            (0..200).map(|_| draw(&mut rng, 3)).collect::<Vec<_>>()
        };
        assert_eq!(draw_all(7), draw_all(7));
        assert_ne!(draw_all(7), draw_all(8));
    }

    #[test]
    fn every_kind_of_step_and_fault_is_drawn() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let steps: Vec<Step> = (0..2_000).map(|_| draw(&mut rng, 3)).collect();
        let kinds: std::collections::BTreeSet<String> = steps
            .iter()
            .map(|s| {
                format!("{:?}", s.op)
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(kinds.len(), 16, "{kinds:?}");
        assert!(steps.iter().any(|s| s.faults.kill_at.is_some()));
        for when in ["before", "after"] {
            assert!(
                steps
                    .iter()
                    .any(|s| s.faults.stripe.as_ref().is_some_and(|f| f.when == when))
            );
        }
        for fault in DynamoFault::ALL {
            assert!(
                steps
                    .iter()
                    .any(|s| s.faults.dynamo.as_ref().is_some_and(|f| f.fault == fault))
            );
        }
        assert!(steps.iter().any(|s| !s.keyed));
    }
}
