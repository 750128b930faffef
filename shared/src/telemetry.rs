//! Logging: JSON lines in Lambda (each line carries the request span, whose `request_id`
//! is Lambda's), human-readable elsewhere. `RUST_LOG` filters. Keys and secrets are never
//! logged: request spans record the path only, never headers or query strings. Logs go to
//! stderr (Lambda ships both streams), so stdout stays for what a tool prints.
//!
//! `RUST_LOG` takes `target=level` directives (`info`, `warn,shared=debug`): a `Targets`
//! filter, which needs no regex engine in every bootstrap, unlike `EnvFilter`.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `RUST_LOG` describes; `info` when it is unset or unreadable.
pub fn filter_from(spec: Option<&str>) -> Targets {
    spec.and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

pub fn init() {
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr);
    // A second init (tests, tools that call it twice) keeps the first subscriber.
    let _ = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init()
    } else {
        builder.compact().finish().with(filter).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_directives_filter_by_target() {
        let f = filter_from(Some("warn,shared=debug"));
        assert!(f.would_enable("shared::store", &Level::DEBUG));
        assert!(!f.would_enable("shared::store", &Level::TRACE));
        assert!(f.would_enable("hyper", &Level::WARN));
        assert!(!f.would_enable("hyper", &Level::INFO));
    }

    #[test]
    fn unset_or_unreadable_means_info() {
        for spec in [None, Some("shared=loudest")] {
            let f = filter_from(spec);
            assert!(f.would_enable("anything", &Level::INFO), "{spec:?}");
            assert!(!f.would_enable("anything", &Level::DEBUG), "{spec:?}");
        }
    }
}
