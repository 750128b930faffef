//! Operational metrics as CloudWatch Embedded Metric Format lines (EMF, one JSON document per
//! line on stdout, which Lambda ships to CloudWatch Logs, where CloudWatch extracts the
//! metrics). The `metrics` facade records them; `metrics_cloudwatch_embedded` writes EMF.
//!
//! [`METRICS`] is the catalog: every metric the code emits, with its dimensions. The emitters
//! below are the only way code records one, so what a dashboard or an alarm of template.yaml
//! names can be checked against the catalog (tools/local/tests/template.rs) and the catalog
//! against what is written (the tests below). Every metric carries the `Stage` dimension
//! (`test` or `live`), the deployment's Stripe mode.
//!
//! Outside Lambda no recorder is installed and every emitter is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "BillingApi";

/// One metric of the catalog: its name and the names of its dimensions, `Stage` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub dimensions: &'static [&'static str],
    /// The EMF unit: `Count` or `Milliseconds`.
    pub unit: &'static str,
}

/// Requests answered, by route (the path template, `/v1/credits/access`) and status class
/// (`2xx`, `4xx`, `5xx`).
pub const REQUESTS: MetricDef = MetricDef {
    name: "Requests",
    dimensions: &["Stage", "Route", "StatusClass"],
    unit: "Count",
};
/// Time from the request to the response, by route.
pub const LATENCY: MetricDef = MetricDef {
    name: "Latency",
    dimensions: &["Stage", "Route"],
    unit: "Milliseconds",
};
/// Stripe calls by operation (`checkout.sessions.create`) and outcome (`ok`, `card_error`,
/// `not_found`, `refused`, `invalid_input`, `unavailable`).
pub const STRIPE_CALLS: MetricDef = MetricDef {
    name: "StripeCalls",
    dimensions: &["Stage", "Operation", "Outcome"],
    unit: "Count",
};
/// Time each Stripe call took, by operation.
pub const STRIPE_LATENCY: MetricDef = MetricDef {
    name: "StripeLatency",
    dimensions: &["Stage", "Operation"],
    unit: "Milliseconds",
};
/// Stripe failures that were ours or Stripe's (`unavailable`, `refused`): no answer, a 5xx, a
/// 429, or a request Stripe calls invalid. Card errors and missing objects are answers.
pub const STRIPE_FAILURES: MetricDef = MetricDef {
    name: "StripeFailures",
    dimensions: &["Stage"],
    unit: "Count",
};
/// Webhook events by Stripe event type and outcome (`processed`, `duplicate`, `ignored`,
/// `failed`).
pub const WEBHOOK_EVENTS: MetricDef = MetricDef {
    name: "WebhookEvents",
    dimensions: &["Stage", "EventType", "Outcome"],
    unit: "Count",
};
/// Credits granted (purchases, reports, grants the reconciler completed).
pub const CREDITS_GRANTED: MetricDef = MetricDef {
    name: "CreditsGranted",
    dimensions: &["Stage"],
    unit: "Count",
};
/// Credits spent (documents unlocked, analyses counted on a report credit).
pub const CREDITS_SPENT: MetricDef = MetricDef {
    name: "CreditsSpent",
    dimensions: &["Stage"],
    unit: "Count",
};
/// Requests answered from a stored Idempotency-Key response, by route.
pub const IDEMPOTENT_REPLAYS: MetricDef = MetricDef {
    name: "IdempotentReplays",
    dimensions: &["Stage", "Route"],
    unit: "Count",
};
/// Requests refused with 429 by a key's rate limit, by the account's plan.
pub const RATE_LIMITED: MetricDef = MetricDef {
    name: "RateLimited",
    dimensions: &["Stage", "Plan"],
    unit: "Count",
};
/// Differences the reconciler found between our copy and Stripe (each one it healed or
/// would heal), per run.
pub const RECONCILER_DRIFT: MetricDef = MetricDef {
    name: "ReconcilerDrift",
    dimensions: &["Stage"],
    unit: "Count",
};

/// Every metric the code emits.
pub const METRICS: &[MetricDef] = &[
    REQUESTS,
    LATENCY,
    STRIPE_CALLS,
    STRIPE_LATENCY,
    STRIPE_FAILURES,
    WEBHOOK_EVENTS,
    CREDITS_GRANTED,
    CREDITS_SPENT,
    IDEMPOTENT_REPLAYS,
    RATE_LIMITED,
    RECONCILER_DRIFT,
];

static COLLECTOR: OnceLock<&'static metrics_cloudwatch_embedded::Collector> = OnceLock::new();

/// Installs the EMF recorder for `stage` (`test` or `live`): once per process, in Lambda.
pub fn init(stage: &str) {
    if COLLECTOR.get().is_some() {
        return;
    }
    let built = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("Stage", stage.to_owned())
        .init();
    match built {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            for m in METRICS {
                let unit = if m.unit == "Milliseconds" {
                    metrics::Unit::Milliseconds
                } else {
                    metrics::Unit::Count
                };
                metrics::describe_histogram!(m.name, unit, "");
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics are off: the EMF recorder was not installed"),
    }
}

/// Writes what was recorded since the last flush as EMF lines to stdout: after each
/// invocation, before Lambda freezes the instance.
pub fn flush() {
    if let Some(collector) = COLLECTOR.get() {
        // One write for all the lines (each stays a log event of its own).
        let mut lines = Vec::with_capacity(2048);
        flush_to(collector, &mut lines);
        if !lines.is_empty() {
            use std::io::Write;
            if let Err(e) = std::io::stdout().lock().write_all(&lines) {
                tracing::warn!(error = %e, "metrics were not written");
            }
        }
    }
}

/// Writes what was recorded since the last flush as EMF lines to `writer` (tests read them).
pub fn flush_into(writer: impl std::io::Write) {
    if let Some(collector) = COLLECTOR.get() {
        flush_to(collector, writer);
    }
}

fn flush_to(collector: &metrics_cloudwatch_embedded::Collector, writer: impl std::io::Write) {
    if let Err(e) = collector.flush(writer) {
        tracing::warn!(error = %e, "metrics were not written");
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `2xx`, `4xx`, `5xx` (and `1xx`/`3xx`, which the API does not answer).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A request answered: its route's count by status class, and its latency.
pub fn request(route: &str, status: u16, elapsed: Duration) {
    let route = route.to_owned();
    metrics::counter!(REQUESTS.name, "Route" => route.clone(), "StatusClass" => status_class(status))
        .increment(1);
    metrics::histogram!(LATENCY.name, "Route" => route).record(millis(elapsed));
}

/// A Stripe call made: its outcome and latency; failures of ours or Stripe's counted apart.
pub fn stripe_call(operation: &'static str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(STRIPE_CALLS.name, "Operation" => operation, "Outcome" => outcome)
        .increment(1);
    metrics::histogram!(STRIPE_LATENCY.name, "Operation" => operation).record(millis(elapsed));
    if matches!(outcome, "unavailable" | "refused") {
        metrics::counter!(STRIPE_FAILURES.name).increment(1);
    }
}

/// A webhook event handled, by its type and how.
pub fn webhook_event(event_type: &str, outcome: &'static str) {
    metrics::counter!(WEBHOOK_EVENTS.name, "EventType" => event_type.to_owned(), "Outcome" => outcome)
        .increment(1);
}

/// Credits a grant added (a committed grant: a purchase, a report, a reconciler's grant).
pub fn credits_granted(credits: i64) {
    metrics::counter!(CREDITS_GRANTED.name).increment(u64::try_from(credits).unwrap_or(0));
}

/// Credits a committed spend took (documents unlocked, an analysis on a report credit).
pub fn credits_spent(credits: i64) {
    if credits > 0 {
        metrics::counter!(CREDITS_SPENT.name).increment(u64::try_from(credits).unwrap_or(0));
    }
}

pub fn idempotent_replay(route: &str) {
    metrics::counter!(IDEMPOTENT_REPLAYS.name, "Route" => route.to_owned()).increment(1);
}

pub fn rate_limited(plan: &str) {
    metrics::counter!(RATE_LIMITED.name, "Plan" => plan.to_owned()).increment(1);
}

/// One reconciler run's drift: every difference it found. A gauge, so a quiet run is written
/// as 0, not left as missing data.
pub fn reconciler_drift(differences: u64) {
    metrics::gauge!(RECONCILER_DRIFT.name).set(differences as f64);
}
