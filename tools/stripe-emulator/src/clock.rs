//! Emulator (business) time: calendar arithmetic and advancing the clock through everything
//! that falls due on the way (renewals, payment retries, period-end cancellations, expiries).

use time::{Date, Month, OffsetDateTime};

use crate::store::State;
use crate::wire::ApiResult;

/// Adds whole billing intervals the way Stripe does: months keep the day of the month,
/// clamped to the month's last day.
pub fn add_interval(t: i64, interval: &str, count: i64) -> i64 {
    let Ok(dt) = OffsetDateTime::from_unix_timestamp(t) else {
        return t.saturating_add(30 * 86_400 * count);
    };
    let months = match interval {
        "day" => return t.saturating_add(86_400 * count),
        "week" => return t.saturating_add(7 * 86_400 * count),
        "year" => 12 * count,
        _ => count,
    };
    let total = i64::from(dt.year()) * 12 + i64::from(u8::from(dt.month())) - 1 + months;
    let (Ok(year), Ok(month0)) = (
        i32::try_from(total.div_euclid(12)),
        u8::try_from(total.rem_euclid(12)),
    ) else {
        return t;
    };
    let Ok(month) = Month::try_from(month0 + 1) else {
        return t;
    };
    let day = dt.day().min(month.length(year));
    match Date::from_calendar_date(year, month, day) {
        Ok(date) => dt.replace_date(date).unix_timestamp(),
        Err(_) => t,
    }
}

pub fn format_date(t: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(dt) => format!("{} {} {}", dt.day(), short_month(dt.month()), dt.year()),
        Err(_) => t.to_string(),
    }
}

pub fn format_datetime(t: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(t) {
        Ok(dt) => format!(
            "{} {:02}:{:02}:{:02} UTC",
            format_date(t),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => t.to_string(),
    }
}

fn short_month(m: Month) -> &'static str {
    match m {
        Month::January => "Jan",
        Month::February => "Feb",
        Month::March => "Mar",
        Month::April => "Apr",
        Month::May => "May",
        Month::June => "Jun",
        Month::July => "Jul",
        Month::August => "Aug",
        Month::September => "Sep",
        Month::October => "Oct",
        Month::November => "Nov",
        Month::December => "Dec",
    }
}

/// Something that falls due at a moment of emulator time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// A subscription's period ends (renewal or cancellation at period end).
    PeriodEnd(String),
    /// An open subscription invoice is retried.
    Retry(String),
    /// An `incomplete` subscription's first payment window (23 hours) closes.
    IncompleteExpiry(String),
    /// A Checkout Session reaches `expires_at`.
    SessionExpiry(String),
}

fn next_due(state: &State, until: i64) -> Option<(i64, Due)> {
    let mut best: Option<(i64, Due)> = None;
    let mut consider = |t: i64, d: Due| {
        if t <= until && best.as_ref().is_none_or(|(bt, bd)| (t, &d) < (*bt, bd)) {
            best = Some((t, d));
        }
    };
    for sub in state.all("subscription") {
        let id = sub["id"].as_str().unwrap_or_default().to_owned();
        match sub["status"].as_str() {
            Some("active" | "trialing" | "past_due") => {
                if let Some(end) = crate::subscriptions::period_end(&sub) {
                    consider(end, Due::PeriodEnd(id));
                }
            }
            Some("incomplete") => {
                consider(
                    sub["created"].as_i64().unwrap_or(0) + 23 * 3600,
                    Due::IncompleteExpiry(id),
                );
            }
            _ => {}
        }
    }
    for inv in state.all("invoice") {
        if inv["status"] == "open"
            && let Some(t) = inv["next_payment_attempt"].as_i64()
        {
            consider(
                t,
                Due::Retry(inv["id"].as_str().unwrap_or_default().to_owned()),
            );
        }
    }
    for cs in state.all("checkout.session") {
        if cs["status"] == "open"
            && let Some(t) = cs["expires_at"].as_i64()
        {
            consider(
                t,
                Due::SessionExpiry(cs["id"].as_str().unwrap_or_default().to_owned()),
            );
        }
    }
    best
}

/// Moves emulator time to `target`, running everything due on the way, in time order.
pub fn advance_to(state: &mut State, target: i64) -> ApiResult<()> {
    // Bounded so a bug can never spin forever; a year of daily events fits easily.
    for _ in 0..10_000 {
        let Some((t, due)) = next_due(state, target) else {
            break;
        };
        if t > state.now() {
            state.set_now(t);
        }
        match due {
            Due::PeriodEnd(id) => crate::subscriptions::period_ended(state, &id)?,
            Due::Retry(id) => crate::subscriptions::retry_invoice(state, &id)?,
            Due::IncompleteExpiry(id) => crate::subscriptions::expire_incomplete(state, &id)?,
            Due::SessionExpiry(id) => {
                crate::checkout::expire(state, &id)?;
            }
        }
    }
    if target > state.now() {
        state.set_now(target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_clamp_to_the_last_day() {
        // 2025-01-31 12:00 UTC + 1 month = 2025-02-28 12:00 UTC.
        assert_eq!(add_interval(1_738_324_800, "month", 1), 1_740_744_000);
        // 2024-12-15 + 1 month crosses the year.
        assert_eq!(add_interval(1_734_220_800, "month", 1), 1_736_899_200);
        assert_eq!(add_interval(0, "year", 1), 31_536_000);
        assert_eq!(format_date(0), "1 Jan 1970");
    }
}
