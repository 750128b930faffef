//! The reconciler: heals our copy from Stripe when webhooks were late, lost or given up on.
//! `admin reconcile` and the scheduled `reconciler` function run this same code.
//!
//! Two walks:
//! 1. **Stripe's events** since a time (Stripe keeps 30 days): every paid one-time Checkout
//!    whose credits were never granted is granted (exactly once: the ledger's grant marker),
//!    and every pending purchase whose Checkout expired or failed is closed — each through
//!    [`crate::events::apply`], what the webhook runs.
//! 2. **Every subject with a Stripe customer** (a scan of the Subscriptions table): its
//!    subscriptions are read from Stripe and, where our item says otherwise, stored through
//!    the sync path's tail ([`crate::sync::store_snapshot`]). A subject with more than one
//!    live subscription is reported (a refund is a person's decision).
//!
//! Each difference found is a [`Drift`]; with `dry_run` nothing is written. A run right after
//! a run finds no drift.

use crate::error::ApiError;
use crate::events::{self, Event};
use crate::state::AppState;
use crate::subscriptions::{SubscriptionRecord, SubscriptionStatus, timestamp};
use crate::sync;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Walk the events created at or after this time (unix s).
    pub since: i64,
    /// Report only; change nothing.
    pub dry_run: bool,
}

/// What kind of difference between Stripe and our copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The subject's plan differs from Stripe's.
    Subscription,
    /// More than one live Stripe subscription for one subject.
    DuplicateSubscriptions,
    /// A paid one-time Checkout whose credits were never granted.
    UngrantedSession,
    /// A pending purchase whose Checkout expired or failed.
    PendingPurchase,
    /// What our copy names no longer exists in Stripe.
    MissingInStripe,
    /// Reconciling this item failed (the error is in `stripe`); the run went on.
    Failed,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Subscription => "subscription",
            DriftKind::DuplicateSubscriptions => "duplicate_subscriptions",
            DriftKind::UngrantedSession => "ungranted_session",
            DriftKind::PendingPurchase => "pending_purchase",
            DriftKind::MissingInStripe => "missing_in_stripe",
            DriftKind::Failed => "failed",
        }
    }
}

/// One difference found, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub kind: DriftKind,
    pub account: String,
    pub subject: String,
    /// The Stripe object: a subscription, a Checkout Session, a customer.
    pub object: String,
    /// What we had, then what Stripe says.
    pub ours: String,
    pub stripe: String,
    /// What the run did: `synced`, `granted`, `closed`, `reported`, `refused (a newer read
    /// is stored)`, `error`, or `none (dry run)`.
    pub action: String,
}

impl Report {
    /// Records a drift, and logs it at once: a run cut short still leaves its trace.
    fn push(&mut self, drift: Drift) {
        tracing::warn!(
            kind = drift.kind.as_str(),
            account = %drift.account,
            subject = %drift.subject,
            object = %drift.object,
            ours = %drift.ours,
            stripe = %drift.stripe,
            action = %drift.action,
            "drift"
        );
        self.drifts.push(drift);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub events_read: usize,
    pub subjects_read: usize,
    pub drifts: Vec<Drift>,
}

impl Report {
    /// The drift table an operator reads, one row per drift (a line saying there is none
    /// otherwise).
    pub fn table(&self) -> String {
        if self.drifts.is_empty() {
            return format!(
                "No drift: {} events and {} subjects agree with Stripe.\n",
                self.events_read, self.subjects_read
            );
        }
        let header = [
            "KIND", "ACCOUNT", "SUBJECT", "OBJECT", "OURS", "STRIPE", "ACTION",
        ];
        let rows: Vec<[&str; 7]> = self
            .drifts
            .iter()
            .map(|d| {
                [
                    d.kind.as_str(),
                    d.account.as_str(),
                    d.subject.as_str(),
                    d.object.as_str(),
                    d.ours.as_str(),
                    d.stripe.as_str(),
                    d.action.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 7]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut out = line(header);
        for row in rows {
            out.push_str(&line(row));
        }
        out.push_str(&format!(
            "{} drift(s) in {} events and {} subjects.\n",
            self.drifts.len(),
            self.events_read,
            self.subjects_read
        ));
        out
    }
}

/// Where a run is, for a progress display (the CLI's bars; nothing in Lambda).
pub trait Progress: Sync {
    /// A walk begins.
    fn phase(&self, _name: &str) {}
    /// One item of the current walk is done.
    fn step(&self) {}
}

/// No progress display.
impl Progress for () {}

/// The events walk reads at most this many pages (of 100) per run: bounded work per run.
pub const MAX_EVENT_PAGES: usize = 500;

/// Runs both walks.
pub async fn run(
    state: &AppState,
    options: Options,
    progress: &dyn Progress,
) -> Result<Report, ApiError> {
    let mut report = Report::default();
    walk_events(state, options, progress, &mut report).await?;
    walk_subjects(state, options, progress, &mut report).await?;
    tracing::info!(
        events = report.events_read,
        subjects = report.subjects_read,
        drifts = report.drifts.len(),
        dry_run = options.dry_run,
        "reconciled"
    );
    Ok(report)
}

fn action(options: Options, done: &str) -> String {
    if options.dry_run {
        "none (dry run)".into()
    } else {
        done.into()
    }
}

async fn walk_events(
    state: &AppState,
    options: Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), ApiError> {
    progress.phase("Stripe events");
    let mut cursor: Option<String> = None;
    // A session can have two events (completed, then async_payment_succeeded): one drift.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_EVENT_PAGES {
        let page = state
            .stripe
            .events_since(options.since, cursor.as_deref())
            .await?;
        for raw in &page.events {
            report.events_read += 1;
            progress.step();
            let Some(event) = Event::from_json(raw) else {
                continue;
            };
            let session = event.object["id"].as_str().unwrap_or_default().to_string();
            let owner = event.owner();
            let drift = |kind, ours: String, action: String| Drift {
                kind,
                account: owner
                    .as_ref()
                    .map(|o| o.account_id.clone())
                    .unwrap_or_default(),
                subject: owner
                    .as_ref()
                    .map(|o| o.subject.clone())
                    .unwrap_or_default(),
                object: session.clone(),
                ours,
                stripe: event.type_.clone(),
                action,
            };
            let missing = match events::missing_effect(state, &event).await {
                Ok(Some(missing)) if seen.insert(session.clone()) => missing,
                Ok(_) => continue,
                Err(e) => {
                    report.push(drift(DriftKind::Failed, format!("{e:?}"), "error".into()));
                    continue;
                }
            };
            let (kind, done) =
                if event.type_.ends_with("completed") || event.type_.ends_with("succeeded") {
                    (DriftKind::UngrantedSession, "granted")
                } else {
                    (DriftKind::PendingPurchase, "closed")
                };
            let action = match options.dry_run {
                true => action(options, done),
                false => match events::apply(state, &event).await {
                    Ok(_) => done.to_string(),
                    Err(e) => {
                        report.push(drift(DriftKind::Failed, format!("{e:?}"), "error".into()));
                        continue;
                    }
                },
            };
            report.push(drift(kind, missing, action));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
    tracing::warn!(
        pages = MAX_EVENT_PAGES,
        "the events walk stopped at its page bound"
    );
    Ok(())
}

/// How a plan reads in the drift table: `active pro to 2025-12-01T00:00:00Z`.
fn describe(
    id: Option<&str>,
    status: Option<SubscriptionStatus>,
    tier: Option<crate::catalog::Tier>,
    period_end: Option<i64>,
    cancel: bool,
) -> String {
    let Some(id) = id else {
        return "no subscription".into();
    };
    format!(
        "{id} {} {}{}{}",
        status.map_or("?", SubscriptionStatus::as_str),
        tier.map(|t| t.as_str()).unwrap_or("?"),
        period_end
            .and_then(timestamp)
            .map(|t| format!(" to {t}"))
            .unwrap_or_default(),
        if cancel { " (cancels)" } else { "" }
    )
}

async fn walk_subjects(
    state: &AppState,
    options: Options,
    progress: &dyn Progress,
    report: &mut Report,
) -> Result<(), ApiError> {
    progress.phase("subjects");
    let mut cursor = None;
    loop {
        let (records, next) = state.store.subscriptions_page(cursor).await?;
        for record in records {
            report.subjects_read += 1;
            progress.step();
            if let Err(e) = reconcile_subject(state, options, &record, report).await {
                report.push(Drift {
                    kind: DriftKind::Failed,
                    account: record.account_id.clone(),
                    subject: record.subject.clone(),
                    object: record.stripe_customer_id.clone(),
                    ours: String::new(),
                    stripe: format!("{e:?}"),
                    action: "error".into(),
                });
            }
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

async fn reconcile_subject(
    state: &AppState,
    options: Options,
    record: &SubscriptionRecord,
    report: &mut Report,
) -> Result<(), ApiError> {
    let customer = record.stripe_customer_id.as_str();
    let drift = |kind, object: &str, ours: String, stripe: String, done: &str| Drift {
        kind,
        account: record.account_id.clone(),
        subject: record.subject.clone(),
        object: object.to_string(),
        ours,
        stripe,
        action: action(options, done),
    };
    let read_at = sync::read_started(state);
    let subscriptions = match state.stripe.subscriptions_of(customer).await {
        Ok(subscriptions) => subscriptions,
        Err(crate::stripe::StripeFailure::NotFound(message)) => {
            report.push(Drift {
                action: "reported".into(),
                ..drift(
                    DriftKind::MissingInStripe,
                    customer,
                    "a customer".into(),
                    message,
                    "",
                )
            });
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let live: Vec<&str> = subscriptions
        .iter()
        .filter(|s| s.is_live())
        .map(|s| s.id.as_str())
        .collect();
    let ours = describe(
        record.stripe_subscription_id.as_deref(),
        record.status,
        record.tier,
        record.current_period_end,
        record.cancel_at_period_end,
    );
    if live.len() > 1 {
        report.push(Drift {
            action: "reported".into(),
            ..drift(
                DriftKind::DuplicateSubscriptions,
                customer,
                ours.clone(),
                format!("{} live: {}", live.len(), live.join(", ")),
                "",
            )
        });
    }
    let Some(current) = sync::current(&subscriptions) else {
        return Ok(());
    };
    if sync::reflects(record, current) {
        return Ok(());
    }
    let done = if options.dry_run {
        "synced"
    } else {
        let written = sync::store_snapshot(
            state,
            &record.account_id,
            &record.subject,
            current,
            None,
            read_at,
        )
        .await?;
        if written.is_some() {
            "synced"
        } else {
            "refused (a newer read is stored)"
        }
    };
    report.push(drift(
        DriftKind::Subscription,
        &current.id,
        ours,
        describe(
            Some(&current.id),
            Some(current.status),
            current.tier,
            current.current_period_end,
            current.cancel_at_period_end,
        ),
        done,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_drift_and_says_when_there_is_none() {
        let mut report = Report {
            events_read: 3,
            subjects_read: 2,
            drifts: vec![],
        };
        assert_eq!(
            report.table(),
            "No drift: 3 events and 2 subjects agree with Stripe.\n"
        );
        report.push(Drift {
            kind: DriftKind::Subscription,
            account: "acct_1".into(),
            subject: "self".into(),
            object: "sub_1".into(),
            ours: "sub_1 active pro".into(),
            stripe: "sub_1 canceled pro".into(),
            action: "synced".into(),
        });
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("KIND"));
        assert!(lines[1].starts_with("subscription  acct_1"), "{table}");
        assert!(lines[1].ends_with("synced"));
        assert_eq!(lines[2], "1 drift(s) in 3 events and 2 subjects.");
    }
}
