//! The scheduled reconciler: EventBridge invokes it hourly (template.yaml) and it runs
//! `shared::reconcile` — the code `admin reconcile` runs — over the events of the last
//! `RECONCILE_SINCE_HOURS` (default 72: Stripe's webhook retry window, so every event a lost
//! or failed delivery left behind is seen by many runs) and every subject.

use serde::Serialize;
use shared::AppState;
use shared::reconcile::{self, Options};

/// How far back a scheduled run walks Stripe's events, by default.
pub const DEFAULT_SINCE_HOURS: i64 = 72;

/// What a run answers (the invocation's result, in its log too).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub events_read: usize,
    pub subjects_read: usize,
    pub drifts: usize,
}

/// `RECONCILE_SINCE_HOURS`, 1 to 720 (Stripe keeps events 30 days).
pub fn since_hours(raw: Option<&str>) -> Result<i64, String> {
    match raw {
        None => Ok(DEFAULT_SINCE_HOURS),
        Some(h) => h
            .parse::<i64>()
            .ok()
            .filter(|h| (1..=720).contains(h))
            .ok_or_else(|| format!("RECONCILE_SINCE_HOURS must be 1 to 720, not `{h}`")),
    }
}

/// One scheduled run.
pub async fn handle(state: &AppState, since_hours: i64) -> Result<Summary, shared::ApiError> {
    let now = state.clock.now().unix_timestamp();
    let options = Options {
        since: now - since_hours * 3600,
        dry_run: false,
    };
    let report = reconcile::run(state, options, &()).await?;
    shared::metrics::reconciler_drift(report.drifts.len() as u64);
    shared::metrics::flush();
    Ok(Summary {
        events_read: report.events_read,
        subjects_read: report.subjects_read,
        drifts: report.drifts.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_defaults_to_stripes_retry_window_and_is_bounded() {
        assert_eq!(since_hours(None), Ok(72));
        assert_eq!(since_hours(Some("24")), Ok(24));
        for bad in ["0", "721", "x"] {
            assert!(since_hours(Some(bad)).is_err(), "{bad}");
        }
    }
}
