//! Runs one seed: draws each step, runs it through the API as its client would (retries
//! included), delivers webhooks as the seeded network decides, and checks the invariants.

use crate::check::{self, Seen};
use crate::ops::{self, DAY, Fate, HOUR, Op, Pay, Step, USERS, User};
use crate::world::{Answer, Call, World};
use http::Method;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// Stripe retries a failed delivery for up to three days.
const STRIPE_RETRY_WINDOW: i64 = 3 * DAY;
/// A client tries a request at most this many times.
const MAX_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct Options {
    /// Steps per seed.
    pub ops: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { ops: 60 }
    }
}

/// What a seed did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub seed: u64,
    pub ops: u64,
    pub requests: u64,
    pub deliveries: u64,
    /// Faults that fired (not merely armed), and webhook fates, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Invariant checks made (one per invariant per subject or item checked).
    pub checks: u64,
    /// Answers by status class (`2xx`, `4xx`, `5xx`, `killed`).
    pub answers: BTreeMap<String, u64>,
    /// Every step, as run.
    pub trace: Vec<String>,
}

impl SeedReport {
    /// Adds another seed's numbers to these.
    pub fn add(&mut self, other: &SeedReport) {
        self.ops += other.ops;
        self.requests += other.requests;
        self.deliveries += other.deliveries;
        self.checks += other.checks;
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in &other.answers {
            *self.answers.entry(k.clone()).or_default() += v;
        }
    }

    /// The numbers on one line: what ran, what was injected, what was checked.
    pub fn summary(&self) -> String {
        let list = |m: Vec<String>| m.join(" ");
        format!(
            "{} ops, {} requests, {} webhook deliveries, {} invariant checks | answers {} | faults {}",
            self.ops,
            self.requests,
            self.deliveries,
            self.checks,
            list(
                self.answers
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            ),
            list(
                self.faults
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            ),
        )
    }
}

/// Runs `seeds`, `jobs` at a time (each in its own world; they wait on time more than on
/// CPU), in seed order.
pub async fn run_seeds(
    seeds: &[u64],
    options: &Options,
    jobs: usize,
) -> Vec<(u64, Result<SeedReport, Box<Violation>>)> {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = seeds.len();
    let mut running = tokio::task::JoinSet::new();
    for &seed in seeds {
        let (gate, options, done) = (gate.clone(), options.clone(), done.clone());
        running.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let ops = options.ops;
            let result = match tokio::spawn(async move { run_seed(seed, &options).await }).await {
                Ok(result) => result,
                Err(e) => Err(Box::new(Violation {
                    seed,
                    ops,
                    at: "a step".into(),
                    invariant: "6 (no 5xx without a fault, never a panic)",
                    message: format!("the seed's task panicked: {e}"),
                    trace: Vec::new(),
                })),
            };
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if total >= 50 && n % 25 == 0 {
                eprintln!("sim: {n}/{total} seeds done");
            }
            (seed, result)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = running.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(e) => results.push((
                u64::MAX,
                Err(Box::new(Violation {
                    seed: u64::MAX,
                    ops: options.ops,
                    at: "its task".into(),
                    invariant: "harness",
                    message: e.to_string(),
                    trace: Vec::new(),
                })),
            )),
        }
    }
    results.sort_by_key(|(seed, _)| *seed);
    results
}

/// An invariant that did not hold.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    /// The run's steps per seed (a replay needs the same).
    pub ops: usize,
    /// The step it was found after (or at quiescence).
    pub at: String,
    pub invariant: &'static str,
    pub message: String,
    /// Every step up to the violation.
    pub trace: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} violated invariant {} at {}: {}",
            self.seed, self.invariant, self.at, self.message
        )?;
        writeln!(
            f,
            "replay: make sim SEED={} OPS={} TRACE=1",
            self.seed, self.ops
        )?;
        writeln!(f, "trace:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

pub type Failure = (&'static str, String);

fn violation(invariant: &'static str, message: impl Into<String>) -> Failure {
    (invariant, message.into())
}

/// A webhook on its way.
struct Pending {
    job: stripe_emulator::DeliveryJob,
    due: i64,
    /// When Stripe first tried it (its retry window counts from there).
    first: i64,
    attempt: u32,
}

/// A subscription id no subject has (what a client without one would send).
const NO_SUBSCRIPTION: &str = "sub_sim_none";

/// What a step's operation looked up before its faults were armed.
#[derive(Debug, Default)]
struct Prepared {
    subscription: String,
    customer: String,
    victim_before: Option<Value>,
}

/// One running seed.
pub struct Sim {
    pub seed: u64,
    pub world: World,
    rng: Xoshiro256PlusPlus,
    /// The delivery network's own stream, so what the API emits cannot shift the steps.
    net: Xoshiro256PlusPlus,
    /// The clients' choices (resend, retry without a key), a stream per step: how many
    /// requests a step makes depends on the answers, and must not shift the next steps.
    clients: Xoshiro256PlusPlus,
    pending: Vec<Pending>,
    pub report: SeedReport,
    pub trace: Vec<String>,
    /// Idempotency keys' first final answers: (API key, Idempotency-Key) → answer.
    replays: HashMap<(String, String), Answer>,
    pub seen: Seen,
    /// Every webhook's routing and delivery: (object id, line).
    pub network_log: Vec<(String, String)>,
    started: i64,
    key_counter: u64,
    /// Faults of the running step (re-armed for nothing: each fires once at most).
    kill_at: Option<u32>,
    stripe_armed: u32,
    stripe_kind: &'static str,
    /// What the last check counted (the next step's "before").
    counts: check::Counts,
    /// The webhook endpoint fails every delivery until then (a bad deploy, an outage).
    outage_until: i64,
}

impl Sim {
    async fn new(seed: u64) -> anyhow::Result<Self> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let net = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x0005_eed0_f4e7);
        let accounts = rng.random_range(2..=3);
        let world = World::start(accounts).await?;
        let started = world.now();
        Ok(Self {
            seed,
            world,
            rng,
            net,
            clients: Xoshiro256PlusPlus::seed_from_u64(seed),
            pending: Vec::new(),
            report: SeedReport {
                seed,
                ..SeedReport::default()
            },
            trace: Vec::new(),
            replays: HashMap::new(),
            seen: Seen::default(),
            network_log: Vec::new(),
            started,
            key_counter: 0,
            kill_at: None,
            stripe_armed: 0,
            stripe_kind: "stripe_5xx",
            counts: check::Counts::default(),
            outage_until: 0,
        })
    }

    fn fault_fired(&mut self, kind: &'static str) {
        *self.report.faults.entry(kind).or_default() += 1;
    }

    fn new_key(&mut self) -> String {
        self.key_counter += 1;
        format!("sim-{}-{}", self.seed, self.key_counter)
    }

    fn api_key(&self, account: usize) -> String {
        self.world.accounts[account].key.clone()
    }

    fn account_id(&self, account: usize) -> String {
        self.world.accounts[account].id.to_string()
    }

    /// Which faults fired since the last look (DynamoDB's and Stripe's), counted.
    async fn faults_fired(&mut self) -> anyhow::Result<bool> {
        Ok(self.count_faults_fired().await? > 0)
    }

    /// How many faults fired since the last look (each counted by kind).
    async fn count_faults_fired(&mut self) -> anyhow::Result<u32> {
        let fired = self.world.dynamo.take_fired();
        for (_, fault) in &fired {
            self.fault_fired(fault.name());
        }
        let mut count = u32::try_from(fired.len()).unwrap_or(u32::MAX);
        if self.stripe_armed > 0 {
            let remaining = self.world.stripe_faults_remaining().await?;
            if remaining < self.stripe_armed {
                count += self.stripe_armed - remaining;
                self.stripe_armed = remaining;
                let kind = self.stripe_kind;
                self.fault_fired(kind);
            }
        }
        Ok(count)
    }

    /// Requests sent all at once (two tabs, a burst), each once: the first may be killed.
    /// A 5xx is excused only by a fault that fired, one fault per failed request.
    async fn concurrently(&mut self, calls: &[Call]) -> Result<Vec<Answer>, Failure> {
        let kill = self.kill_at.take();
        let sends = calls
            .iter()
            .enumerate()
            .map(|(i, c)| self.world.send(c, if i == 0 { kill } else { None }));
        let answers = futures_join_all(sends).await;
        let mut excuses = self
            .count_faults_fired()
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        let mut out = Vec::with_capacity(answers.len());
        for (call, answer) in calls.iter().zip(answers) {
            let answer = answer.map_err(|e| violation("harness", format!("{e:#}")))?;
            self.report.requests += 1;
            let killed = answer == Answer::Killed;
            if killed {
                self.fault_fired("handler_killed");
            }
            let failed = answer.status().is_some_and(|s| s >= 500);
            let excused = killed || (failed && excuses > 0);
            if failed && excuses > 0 {
                excuses -= 1;
            }
            self.count_answer(&answer);
            self.check_answer(call, &answer, excused)?;
            out.push(answer);
        }
        Ok(out)
    }

    /// One request as its client sends it: retried while it gets no final answer (a 5xx, a
    /// 409 `request_in_progress`, no answer at all), with the same Idempotency-Key when it has
    /// one; sometimes sent once more after a final answer (the answer lost on its way back),
    /// which must replay it.
    async fn client(&mut self, call: Call) -> Result<Answer, Failure> {
        let mut last = Answer::Killed;
        let resend_final = call.idempotency_key.is_some() && self.clients.random_bool(0.2);
        let mut resent = false;
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            attempt += 1;
            let kill = self.kill_at.take();
            let answer = self
                .world
                .send(&call, kill)
                .await
                .map_err(|e| violation("harness", format!("{e:#}")))?;
            self.report.requests += 1;
            let faulted = self
                .faults_fired()
                .await
                .map_err(|e| violation("harness", format!("{e:#}")))?
                || answer == Answer::Killed;
            if answer == Answer::Killed {
                self.fault_fired("handler_killed");
            }
            self.count_answer(&answer);
            self.check_answer(&call, &answer, faulted)?;
            let final_answer = matches!(answer.status(), Some(s) if s < 500 && s != 409);
            last = answer;
            if final_answer {
                if resend_final && !resent {
                    resent = true;
                    attempt -= 1;
                    continue;
                }
                break;
            }
            if matches!(last, Answer::Killed) || last.status() == Some(409) {
                // The client backs off past the dead request's lease before trying again.
                self.advance(61).await?;
            }
            if call.idempotency_key.is_none() && call.method != Method::GET {
                // Without a key, a client retries a failed write only sometimes.
                if !self.clients.random_bool(0.5) {
                    break;
                }
            }
        }
        Ok(last)
    }

    fn count_answer(&mut self, answer: &Answer) {
        let class = match answer.status() {
            Some(s) => format!("{}xx", s / 100),
            None if *answer == Answer::Killed => "killed".into(),
            None => "panic".into(),
        };
        *self.report.answers.entry(class).or_default() += 1;
    }

    /// Invariants 5 and 6 on one answer.
    fn check_answer(&mut self, call: &Call, answer: &Answer, faulted: bool) -> Result<(), Failure> {
        self.report.checks += 2;
        if let Answer::Panicked(m) = answer {
            return Err(violation(
                "6 (no 5xx without a fault, never a panic)",
                format!("{} {} panicked: {m}", call.method, call.path),
            ));
        }
        if let Some(status) = answer.status()
            && status >= 500
            && !faulted
        {
            return Err(violation(
                "6 (no 5xx without a fault, never a panic)",
                format!(
                    "{} {} answered {status} with no fault injected in that request: {}",
                    call.method,
                    call.path,
                    answer.body()
                ),
            ));
        }
        let final_answer = matches!(answer.status(), Some(s) if s < 500 && s != 409);
        if let (Some(key), true) = (&call.idempotency_key, final_answer) {
            let id = (call.key.clone(), key.clone());
            match self.replays.get(&id) {
                None => {
                    self.replays.insert(id, answer.clone());
                }
                Some(first) if first != answer => {
                    return Err(violation(
                        "5 (a retry replays the first answer)",
                        format!(
                            "{} {} with Idempotency-Key {key}: first {} {}, then {} {}",
                            call.method,
                            call.path,
                            first.short(),
                            first.body(),
                            answer.short(),
                            answer.body()
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Moves time; what falls due in Stripe runs, and deliveries due by then are made.
    async fn advance(&mut self, seconds: i64) -> Result<(), Failure> {
        self.world
            .advance(seconds)
            .map_err(|e| violation("harness", format!("advancing the clock: {e:#}")))
    }

    fn keyed_call(&mut self, keyed: bool, call: Call) -> Call {
        let key = keyed.then(|| self.new_key());
        call.idempotency(key)
    }

    fn user_body(user: User, mut body: Value) -> Value {
        if let Some(u) = user {
            body["external_user_id"] = json!(USERS[u]);
        }
        body
    }

    fn user_query(user: User) -> String {
        match user {
            Some(u) => format!("?external_user_id={}", USERS[u]),
            None => String::new(),
        }
    }

    /// One request of `account`'s client (keyed as the step says); its short answer.
    async fn request(
        &mut self,
        keyed: bool,
        account: usize,
        method: Method,
        path: String,
        body: Option<Value>,
    ) -> Result<String, Failure> {
        let mut call = Call::new(method, path, &self.api_key(account));
        call.body = body;
        let call = self.keyed_call(keyed, call);
        Ok(self.client(call).await?.short())
    }

    /// A one-time purchase (`path`: the report or a pack), then its Checkout page as `pay`.
    async fn buy(
        &mut self,
        keyed: bool,
        account: usize,
        path: &str,
        body: Value,
        pay: Pay,
    ) -> Result<String, Failure> {
        let call = Call::new(Method::POST, path, &self.api_key(account)).json(body);
        let call = self.keyed_call(keyed, call);
        let answer = self.client(call).await?;
        let mut out = answer.short();
        if let Some(url) = answer.body()["checkout_url"].as_str() {
            out = format!("{out}, {}", self.pay(url, pay).await?);
        }
        Ok(out)
    }

    /// Pays (or declines) a Checkout page; abandoning leaves it open.
    async fn pay(&mut self, url: &str, pay: Pay) -> Result<String, Failure> {
        let card = match pay {
            Pay::Card => "4242 4242 4242 4242",
            Pay::Declined => "4000 0000 0000 0002",
            Pay::Abandoned => return Ok("abandoned".into()),
        };
        let (status, _) = self
            .world
            .emulator_post(url, &[("card_number", card)])
            .await
            .map_err(|e| violation("harness", format!("paying {url}: {e:#}")))?;
        Ok(format!("page {status}"))
    }

    /// The subject's subscription id as the API shows it, or a made-up one.
    async fn subscription_id(&mut self, account: usize, user: User) -> Result<String, Failure> {
        let call = Call::new(
            Method::GET,
            format!("/v1/subscriptions{}", Self::user_query(user)),
            &self.api_key(account),
        );
        let answer = self.client(call).await?;
        Ok(answer.body()["subscription_id"]
            .as_str()
            .unwrap_or(NO_SUBSCRIPTION)
            .to_string())
    }

    /// The subject's Stripe customer (from Stripe), or a made-up one.
    async fn customer_of(&mut self, account: usize, user: User) -> Result<String, Failure> {
        let subject = check::subject_key(user);
        let account_id = self.account_id(account);
        let customers = self
            .world
            .stripe_list("/v1/customers")
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        Ok(customers
            .iter()
            .find(|c| {
                c["metadata"]["account_id"] == account_id.as_str()
                    && c["metadata"]["subject"] == subject.as_str()
            })
            .and_then(|c| c["id"].as_str())
            .unwrap_or("cus_sim_none")
            .to_string())
    }

    /// The subject's portal page, via the API.
    async fn portal(
        &mut self,
        account: usize,
        user: User,
        keyed: bool,
    ) -> Result<Option<String>, Failure> {
        let call = Call::new(Method::POST, "/v1/billing/portal", &self.api_key(account)).json(
            Self::user_body(user, json!({"return_url": "https://yourapp.com/account"})),
        );
        let call = self.keyed_call(keyed, call);
        let answer = self.client(call).await?;
        Ok(answer.body()["portal_url"].as_str().map(str::to_string))
    }

    /// Looks up what an operation needs (ids as a client would know them) before its
    /// faults are armed, so they land only on the operation's own requests.
    async fn prepare(&mut self, op: &Op) -> Result<Prepared, Failure> {
        let mut p = Prepared::default();
        match *op {
            Op::ServerCreate { account, user, .. } => {
                p.customer = self.customer_of(account, user).await?;
            }
            Op::Upgrade { account, user, .. }
            | Op::Cancel { account, user }
            | Op::Reactivate { account, user } => {
                p.subscription = self.subscription_id(account, user).await?;
            }
            Op::PortalCancel { account, user } => {
                let customer = self.customer_of(account, user).await?;
                let subs = self
                    .world
                    .stripe_list(&format!("/v1/subscriptions?customer={customer}&status=all"))
                    .await
                    .map_err(|e| violation("harness", format!("{e:#}")))?;
                p.subscription = subs
                    .iter()
                    .find(|s| check::is_live(s["status"].as_str().unwrap_or_default()))
                    .and_then(|s| s["id"].as_str())
                    .unwrap_or_default()
                    .to_string();
            }
            Op::CrossProbe { victim, user, .. } => {
                p.subscription = self.subscription_id(victim, user).await?;
                if p.subscription != NO_SUBSCRIPTION {
                    p.victim_before = Some(
                        self.world
                            .stripe_subscription(&p.subscription)
                            .await
                            .map_err(|e| violation("harness", format!("{e:#}")))?,
                    );
                }
            }
            _ => {}
        }
        Ok(p)
    }

    /// After a cross-account probe: the victim's subscription is as it was.
    async fn probe_unchanged(&mut self, p: &Prepared) -> Result<(), Failure> {
        let Some(before) = &p.victim_before else {
            return Ok(());
        };
        let after = self
            .world
            .stripe_subscription(&p.subscription)
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        self.report.checks += 1;
        if before["cancel_at_period_end"] != after["cancel_at_period_end"]
            || before["items"]["data"][0]["price"]["id"] != after["items"]["data"][0]["price"]["id"]
        {
            return Err(violation(
                "7 (accounts are isolated)",
                format!(
                    "another account's requests changed {} in Stripe",
                    p.subscription
                ),
            ));
        }
        Ok(())
    }

    /// Runs one step's operation; a short description of what happened.
    async fn run_op(&mut self, step: &Step, prepared: &Prepared) -> Result<String, Failure> {
        let keyed = step.keyed;
        let urls = json!({"success_url": "https://yourapp.com/ok",
                          "cancel_url": "https://yourapp.com/pricing"});
        match step.op.clone() {
            Op::Checkout {
                account,
                user,
                tier,
                pay,
                tabs,
            } => {
                let mut body = Self::user_body(user, urls);
                body["tier"] = json!(tier);
                let mut outs = Vec::new();
                let mut pages = Vec::new();
                if tabs == 2 {
                    // Two tabs at once: both requests race, then both pages are paid.
                    let key = self.api_key(account);
                    let a = self.keyed_call(
                        keyed,
                        Call::new(Method::POST, "/v1/billing/checkout", &key).json(body.clone()),
                    );
                    let b = self.keyed_call(
                        keyed,
                        Call::new(Method::POST, "/v1/billing/checkout", &key).json(body),
                    );
                    for answer in self.concurrently(&[a, b]).await? {
                        outs.push(answer.short());
                        if let Some(url) = answer.body()["checkout_url"].as_str() {
                            pages.push(url.to_string());
                        }
                    }
                } else {
                    let call =
                        Call::new(Method::POST, "/v1/billing/checkout", &self.api_key(account))
                            .json(body);
                    let call = self.keyed_call(keyed, call);
                    let answer = self.client(call).await?;
                    outs.push(answer.short());
                    if let Some(url) = answer.body()["checkout_url"].as_str() {
                        pages.push(url.to_string());
                    }
                }
                for url in pages {
                    outs.push(self.pay(&url, pay).await?);
                }
                Ok(outs.join(", "))
            }
            Op::Report { account, user, pay } => {
                let body = Self::user_body(Some(user), urls);
                self.buy(keyed, account, "/v1/billing/purchase-report", body, pay)
                    .await
            }
            Op::Pack {
                account,
                user,
                pack,
                pay,
            } => {
                let mut body = Self::user_body(Some(user), urls);
                body["pack_type"] = json!(pack);
                self.buy(keyed, account, "/v1/credits/purchase", body, pay)
                    .await
            }
            Op::Access {
                account,
                user,
                docs,
            } => {
                let key = self.api_key(account);
                let calls: Vec<Call> = docs
                    .iter()
                    .map(|ids| {
                        let ids: Vec<String> = ids.iter().map(|d| format!("doc_{d}")).collect();
                        Call::new(Method::POST, "/v1/credits/access", &key)
                            .json(json!({"analysis_ids": ids, "external_user_id": USERS[user]}))
                    })
                    .collect();
                let calls: Vec<Call> = calls
                    .into_iter()
                    .map(|c| self.keyed_call(keyed, c))
                    .collect();
                if calls.len() == 1 {
                    let answer = self.client(calls[0].clone()).await?;
                    return Ok(answer.short());
                }
                // A burst: every request at once.
                let answers = self.concurrently(&calls).await?;
                Ok(answers
                    .iter()
                    .map(Answer::short)
                    .collect::<Vec<_>>()
                    .join(", "))
            }
            Op::Analysis { account, user, doc } | Op::Chat { account, user, doc } => {
                let path = match step.op {
                    Op::Analysis { .. } => "/v1/usage/analyses",
                    _ => "/v1/usage/chat-messages",
                };
                let body = Self::user_body(user, json!({"analysis_id": format!("doc_{doc}")}));
                self.request(keyed, account, Method::POST, path.into(), Some(body))
                    .await
            }
            Op::ServerCreate {
                account,
                user,
                tier,
            } => {
                let customer = &prepared.customer;
                let body =
                    Self::user_body(user, json!({"tier": tier, "stripe_customer_id": customer}));
                self.request(
                    keyed,
                    account,
                    Method::POST,
                    "/v1/subscriptions".into(),
                    Some(body),
                )
                .await
            }
            Op::Upgrade { account, tier, .. } => {
                let id = &prepared.subscription;
                let path = format!("/v1/subscriptions/{id}/upgrade");
                let body = json!({"new_tier": tier});
                self.request(keyed, account, Method::PUT, path, Some(body))
                    .await
            }
            Op::Cancel { account, .. } => {
                let path = format!("/v1/subscriptions/{}", prepared.subscription);
                self.request(keyed, account, Method::DELETE, path, None)
                    .await
            }
            Op::Reactivate { account, .. } => {
                let path = format!("/v1/subscriptions/{}/reactivate", prepared.subscription);
                self.request(keyed, account, Method::POST, path, None).await
            }
            Op::PortalCancel { account, user } | Op::PortalFailingCard { account, user } => {
                let Some(url) = self.portal(account, user, keyed).await? else {
                    return Ok("no portal".into());
                };
                let (action, form) = if matches!(step.op, Op::PortalCancel { .. }) {
                    (
                        "cancel",
                        vec![("subscription", prepared.subscription.clone())],
                    )
                } else {
                    (
                        "card",
                        vec![("card_number", "4000000000000341".to_string())],
                    )
                };
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (status, _) = self
                    .world
                    .emulator_post(&format!("{url}/{action}"), &form)
                    .await
                    .map_err(|e| violation("harness", format!("{e:#}")))?;
                Ok(format!("portal {action} {status}"))
            }
            Op::Advance { seconds } => {
                // Time passes as it does in production: deliveries arrive when due and the
                // scheduled reconciler runs (hourly there; here once per day of a jump).
                let mut left = seconds;
                let mut outs = Vec::new();
                while left > 0 {
                    let chunk = left.min(DAY);
                    self.advance(chunk).await?;
                    self.deliver_due(false).await?;
                    left -= chunk;
                    if chunk >= HOUR {
                        outs.push(self.reconcile(72).await?);
                    }
                }
                outs.dedup();
                Ok(format!("now +{}h, {}", seconds / HOUR, outs.join("; ")))
            }
            Op::Reconcile => self.reconcile(72).await,
            Op::CrossProbe { account, .. } => {
                let id = &prepared.subscription;
                if prepared.victim_before.is_none() {
                    return Ok("nothing to probe".into());
                }
                let key = self.api_key(account);
                let mut outs = Vec::new();
                for call in [
                    Call::new(Method::DELETE, format!("/v1/subscriptions/{id}"), &key),
                    Call::new(
                        Method::POST,
                        format!("/v1/subscriptions/{id}/reactivate"),
                        &key,
                    ),
                    Call::new(Method::PUT, format!("/v1/subscriptions/{id}/upgrade"), &key)
                        .json(json!({"new_tier": "enterprise"})),
                ] {
                    let call = self.keyed_call(keyed, call);
                    let answer = self.client(call.clone()).await?;
                    self.report.checks += 1;
                    if matches!(answer.status(), Some(s) if s < 300) {
                        return Err(violation(
                            "7 (accounts are isolated)",
                            format!(
                                "{} {} by another account answered {}",
                                call.method,
                                call.path,
                                answer.short()
                            ),
                        ));
                    }
                    outs.push(answer.short());
                }
                Ok(outs.join(", "))
            }
            Op::Read { account, user } => {
                let key = self.api_key(account);
                let mut outs = Vec::new();
                for path in [
                    "/v1/credits/balance",
                    "/v1/credits/history",
                    "/v1/usage",
                    "/v1/subscriptions",
                ] {
                    let call = Call::new(
                        Method::GET,
                        format!("{path}?external_user_id={}", USERS[user]),
                        &key,
                    );
                    let answer = self.client(call).await?;
                    outs.push(answer.short());
                    if path == "/v1/credits/balance" && answer.status() == Some(200) {
                        self.report.checks += 1;
                        let account_id = self.account_id(account);
                        check::balance_is_own(&self.world, &account_id, USERS[user], answer.body())
                            .await?;
                    }
                    if path == "/v1/subscriptions" && answer.status() == Some(200) {
                        self.seen.views.push((
                            self.account_id(account),
                            Some(user),
                            answer.body().clone(),
                        ));
                    }
                }
                Ok(outs.join(", "))
            }
        }
    }

    /// The reconciler function's run over the last `hours`.
    async fn reconcile(&mut self, hours: i64) -> Result<String, Failure> {
        // In its own task, as the function runs: a panic is a violation, not the harness's.
        let state = self.world.state.clone();
        let result =
            match tokio::spawn(async move { reconciler::handle(&state, hours).await }).await {
                Ok(result) => result,
                Err(e) => {
                    return Err(violation(
                        "6 (no 5xx without a fault, never a panic)",
                        format!("the reconciler panicked: {e}"),
                    ));
                }
            };
        let faulted = self
            .faults_fired()
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        match result {
            Ok(summary) => Ok(format!("reconciled ({} drifts)", summary.drifts)),
            Err(e) if faulted => Ok(format!("reconcile failed under a fault: {e}")),
            Err(e) => Err(violation(
                "6 (no 5xx without a fault, never a panic)",
                format!("the reconciler failed with no fault injected: {e}"),
            )),
        }
    }

    /// Arms the step's faults.
    async fn arm(&mut self, step: &Step) -> Result<(), Failure> {
        let harness = |e: anyhow::Error| violation("harness", format!("{e:#}"));
        if let Some(f) = &step.faults.stripe {
            let status = f.status.to_string();
            self.world
                .arm_stripe_fault(&[
                    ("method", f.method),
                    ("path_prefix", f.path_prefix),
                    ("when", f.when),
                    ("status", &status),
                    ("count", "1"),
                ])
                .await
                .map_err(harness)?;
            self.stripe_armed = 1;
            self.stripe_kind = f.kind();
        }
        if let Some(f) = &step.faults.dynamo {
            self.world
                .dynamo
                .arm_fault(f.operation, f.fault, f.skip, f.count);
        }
        self.kill_at = step.faults.kill_at;
        Ok(())
    }

    async fn disarm(&mut self) -> Result<(), Failure> {
        self.faults_fired()
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        self.world.dynamo.clear();
        self.world
            .clear_stripe_faults()
            .await
            .map_err(|e| violation("harness", format!("{e:#}")))?;
        self.stripe_armed = 0;
        self.kill_at = None;
        Ok(())
    }

    /// Takes the deliveries Stripe queued and sends each on its seeded fate.
    fn route_deliveries(&mut self) {
        let now = self.world.now();
        for job in self.world.stripe.take_held_deliveries() {
            let fate = ops::fate(&mut self.net);
            if fate != Fate::OnTime {
                self.fault_fired(fate.kind());
            }
            let object = object_id(&job.payload);
            let line = format!(
                "{}h {} {} ({}) {fate:?}",
                (now - self.started) / HOUR,
                job.event_id,
                job.event_type,
                object
            );
            self.network_log.push((object, line));
            let copies = match fate {
                Fate::Dropped => 0,
                Fate::OnTime | Fate::Delayed(_) => 1,
                Fate::Duplicated(n) => n,
            };
            let late = match fate {
                Fate::Delayed(s) => s,
                _ => 0,
            };
            for copy in 0..copies {
                self.pending.push(Pending {
                    job: job.clone(),
                    due: now + late + i64::from(copy) * self.net.random_range(0..2 * HOUR),
                    first: now + late,
                    attempt: 1,
                });
            }
        }
    }

    /// Delivers what is due, in a shuffled order; a delivery the API fails is retried by
    /// "Stripe" later, within its three-day window. `all`: everything still pending,
    /// whatever its due time (quiescence).
    async fn deliver_due(&mut self, all: bool) -> Result<usize, Failure> {
        let mut delivered = 0;
        loop {
            self.route_deliveries();
            let now = self.world.now();
            let (mut due, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| all || p.due <= now);
            self.pending = rest;
            if due.is_empty() {
                return Ok(delivered);
            }
            if !all && now < self.outage_until {
                // The endpoint is down: every attempt fails, and Stripe tries again later.
                for mut p in due {
                    self.fault_fired("webhook_attempt_in_outage");
                    let backoff = HOUR << p.attempt.min(6);
                    if now + backoff - p.first <= STRIPE_RETRY_WINDOW {
                        p.attempt += 1;
                        p.due = now + backoff;
                        self.pending.push(p);
                    } else {
                        self.fault_fired("webhook_given_up");
                    }
                }
                return Ok(delivered);
            }
            due.shuffle(&mut self.net);
            if let Some(f) = ops::delivery_fault(&mut self.net) {
                self.world
                    .dynamo
                    .arm_fault(f.operation, f.fault, f.skip, f.count);
            }
            for mut p in due {
                let answer = self
                    .world
                    .deliver(&p.job)
                    .await
                    .map_err(|e| violation("harness", format!("{e:#}")))?;
                self.report.deliveries += 1;
                delivered += 1;
                let object = object_id(&p.job.payload);
                let line = format!(
                    "{}h delivered {} {} ({object}) attempt {}: {}",
                    (now - self.started) / HOUR,
                    p.job.event_id,
                    p.job.event_type,
                    p.attempt,
                    answer.short()
                );
                self.network_log.push((object, line));
                let faulted = self
                    .faults_fired()
                    .await
                    .map_err(|e| violation("harness", format!("{e:#}")))?;
                self.count_answer(&answer);
                self.report.checks += 1;
                match answer.status() {
                    Some(s) if s < 300 => {}
                    Some(s) if s >= 500 && faulted => {}
                    _ => {
                        return Err(violation(
                            "6 (no 5xx without a fault, never a panic)",
                            format!(
                                "webhook {} ({}) answered {}: {}",
                                p.job.event_id,
                                p.job.event_type,
                                answer.short(),
                                answer.body()
                            ),
                        ));
                    }
                }
                if answer.status().is_none_or(|s| s >= 300) {
                    let backoff = HOUR << p.attempt.min(6);
                    if now + backoff - p.first <= STRIPE_RETRY_WINDOW {
                        p.attempt += 1;
                        p.due = if all { now } else { now + backoff };
                        self.pending.push(p);
                    } else {
                        self.fault_fired("webhook_given_up");
                    }
                }
            }
            self.world.dynamo.clear();
        }
    }

    /// Runs a step: arm, run, disarm, deliver, check.
    async fn step(&mut self, n: usize, step: &Step) -> Result<(), Failure> {
        let before = std::mem::take(&mut self.counts);
        self.clients = Xoshiro256PlusPlus::seed_from_u64(self.seed ^ ((n as u64) << 32));
        let prepared = self.prepare(&step.op).await?;
        self.arm(step).await?;
        let outcome = self.run_op(step, &prepared).await;
        self.disarm().await?;
        let outcome = outcome?;
        self.probe_unchanged(&prepared).await?;
        if let Some(hours) = ops::outage(&mut self.net) {
            self.fault_fired("webhook_outage");
            self.outage_until = self.world.now() + hours * HOUR;
        }
        let delivered = self.deliver_due(false).await?;
        self.trace.push(format!(
            "#{n} {:?}{}{} -> {outcome}; {delivered} deliveries",
            step.op,
            if step.keyed {
                ""
            } else {
                " (no Idempotency-Key)"
            },
            if step.faults.is_empty() {
                String::new()
            } else {
                format!(" faults {:?}", step.faults)
            }
        ));
        self.report.ops += 1;
        let after = check::always(self).await?;
        let allowed = u64::from(MAX_ATTEMPTS + 1);
        check::created_at_most(
            &before,
            &after,
            &step.op,
            step.keyed,
            allowed,
            &mut self.report.checks,
        )?;
        self.counts = after;
        Ok(())
    }

    /// Quiescence: every delivery made, the reconciler run once over the whole run, and
    /// what it caused delivered too.
    async fn quiesce(&mut self) -> Result<(), Failure> {
        self.deliver_due(true).await?;
        let since_hours = (self.world.now() - self.started) / HOUR + 2;
        self.reconcile(since_hours).await?;
        self.deliver_due(true).await?;
        self.counts = check::always(self).await?;
        check::at_quiescence(self).await
    }
}

/// The id of the object an event is about.
fn object_id(payload: &str) -> String {
    serde_json::from_str::<Value>(payload)
        .ok()
        .and_then(|e| e["data"]["object"]["id"].as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Sim {
    /// The network's log lines about `object`.
    pub fn network_of(&self, object: &str) -> String {
        self.network_log
            .iter()
            .filter(|(o, _)| o == object)
            .map(|(_, l)| format!("\n    {l}"))
            .collect()
    }

    pub fn hours(&self, t: i64) -> i64 {
        (t - self.started) / HOUR
    }
}

/// Runs `futures` concurrently, answers in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Poll all together: a join over a vector without another dependency.
    let mut slots: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, handle) in slots.iter_mut().zip(handles.iter_mut()) {
            if let Some(h) = handle {
                match h.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *slot = Some(v);
                        *handle = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(slots.into_iter().flatten());
    out
}

/// Runs one seed of `options.ops` steps; its report, or the first violation.
pub async fn run_seed(seed: u64, options: &Options) -> Result<SeedReport, Box<Violation>> {
    let fail = |sim: Option<&Sim>, at: String, (invariant, message): Failure| {
        Box::new(Violation {
            seed,
            ops: options.ops,
            at,
            invariant,
            message,
            trace: sim.map(|s| s.trace.clone()).unwrap_or_default(),
        })
    };
    let mut sim = Sim::new(seed)
        .await
        .map_err(|e| fail(None, "start".into(), violation("harness", format!("{e:#}"))))?;
    sim.counts = check::Counts::read(&sim.world)
        .await
        .map_err(|e| fail(None, "start".into(), violation("harness", format!("{e:#}"))))?;
    for n in 1..=options.ops {
        let step = ops::draw(&mut sim.rng, sim.world.accounts.len());
        if let Err(f) = sim.step(n, &step).await {
            sim.trace.push(format!(
                "#{n} {:?} faults {:?} -> VIOLATION",
                step.op, step.faults
            ));
            return Err(fail(Some(&sim), format!("step {n}"), f));
        }
    }
    if let Err(f) = sim.quiesce().await {
        return Err(fail(Some(&sim), "quiescence".into(), f));
    }
    sim.report.trace = std::mem::take(&mut sim.trace);
    Ok(sim.report)
}
