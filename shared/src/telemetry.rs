//! Logging: JSON lines in Lambda (each line carries the request span, whose `request_id`
//! is Lambda's), human-readable elsewhere. `RUST_LOG` filters. Keys and secrets are never
//! logged: request spans record the path only, never headers or query strings. Logs go to
//! stderr (Lambda ships both streams), so stdout stays for what a tool prints.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    // A second init (tests, tools that call it twice) keeps the first subscriber.
    let _ = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
