//! `make bench`: the performance budgets of DESIGN.md, measured. A benchmark, not a test:
//! it prints markdown tables and writes `bench/results.json`, and never fails on a number.
//!
//! - Bootstrap size of every function's release binary next to a hello-world lambda_http
//!   binary (`tools/hello`), and of the arm64 bootstraps `make build` left in `.aws-sam/`.
//! - Cold start: each release bootstrap exec'd as the Lambda service would, against
//!   `cargo lambda watch --only-lambda-apis` (the Runtime API), until its first response.
//! - Warm latency and throughput of each endpoint on the local stack (oha), next to the
//!   floor: the same DynamoDB calls made directly with the SDK at the same concurrency.
//! - DynamoDB calls per request, counted by an SDK interceptor on the stack's client, next to
//!   the minimum the endpoint's logic allows.

pub mod cold;
pub mod endpoints;
pub mod limits;
pub mod load;
pub mod machine;
pub mod report;
pub mod seed;
pub mod sizes;
pub mod warm;
pub mod writes;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use local::serve::{ServeOptions, Stack};
use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;

/// The budgets of DESIGN.md ("Performance budgets").
pub mod targets {
    /// A release bootstrap, stripped: at most 6 MB (10⁶ bytes).
    pub const BOOTSTRAP_MAX_BYTES: u64 = 6_000_000;
    /// Cold start (exec → first response) within this many times hello's, same run.
    pub const COLD_START_MAX_RATIO: f64 = 2.0;
    /// Warm request overhead on top of its DynamoDB round trips, at p99.
    pub const OVERHEAD_P99_MAX_MS: f64 = 1.0;
}

/// A Lambda binary of the workspace: the five functions and the hello-world baseline.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// The cargo binary (and `AWS_LAMBDA_FUNCTION_NAME` in the cold start).
    pub name: &'static str,
    /// Its logical id in template.yaml (`.aws-sam/build/<id>/bootstrap`); none for hello.
    pub sam_id: Option<&'static str>,
    /// The event of `events/` the cold start invokes it with.
    pub event: &'static str,
}

pub const HELLO: Binary = Binary {
    name: "hello",
    sam_id: None,
    event: "billing-tiers.json",
};

/// Hello first: every ratio is to it.
pub const BINARIES: [Binary; 6] = [
    HELLO,
    Binary {
        name: "billing",
        sam_id: Some("BillingFunction"),
        event: "billing-tiers.json",
    },
    Binary {
        name: "credits",
        sam_id: Some("CreditsFunction"),
        event: "credits-balance.json",
    },
    Binary {
        name: "subscriptions",
        sam_id: Some("SubscriptionsFunction"),
        event: "subscriptions-status.json",
    },
    Binary {
        name: "usage",
        sam_id: Some("UsageFunction"),
        event: "usage-status.json",
    },
    Binary {
        name: "stripe-webhook",
        sam_id: Some("StripeWebhookFunction"),
        event: "stripe-webhook.json",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Sizes,
    Cold,
    /// The cold starts again with the trust store laid out as Lambda's image has it: one PEM
    /// bundle file (`SSL_CERT_FILE`), no certificate directory (`SSL_CERT_DIR` empty).
    Roots,
    Warm,
    /// Keys of the free and pro plans driven past the free plan's rate: what the limiter
    /// admits, and its DynamoDB calls per request.
    Limits,
    /// The paths that write (new documents unlocked, a new analysis counted, a granting
    /// webhook), each request new, next to the same store calls made directly.
    Writes,
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bench",
    about = "Bootstrap sizes, cold starts, warm latency and DynamoDB calls per request of the Billing API"
)]
pub struct Options {
    /// The workspace root: events/, .aws-sam/ and git are read from here.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Where the release bootstraps are (`cargo build --release` of the functions and hello).
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// cargo-lambda, for its Lambda Runtime API emulator (`make` installs it in .venv-sam/).
    #[arg(long, default_value = ".venv-sam/bin/cargo-lambda")]
    pub cargo_lambda: PathBuf,
    /// oha 1.16.0 (`make bench` installs it in target/tools/).
    #[arg(long, default_value = "target/tools/bin/oha")]
    pub oha: PathBuf,
    /// Measured cold starts per binary (each binary also gets one unmeasured first run). A
    /// cold start takes a few milliseconds; with 15 the medians of the same code moved by
    /// ±0.1× hello between runs on 2 shared cores, too much to judge a 2× budget.
    #[arg(long, default_value_t = 40)]
    pub cold_runs: usize,
    /// Concurrent connections (oha) and concurrent callers (floor); each endpoint is loaded at
    /// each of these. One connection shows the overhead without queueing, more the throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub connections: Vec<usize>,
    /// How long each endpoint, and each floor, is loaded: `5s`, `1500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Worker threads of the bench's runtime, which also runs the local stack: the embedded
    /// engine holds its worker while SQLite commits, so more threads than cores keep one
    /// commit from stalling every request in flight.
    #[arg(long, default_value_t = 8)]
    pub worker_threads: usize,
    /// The sections to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sizes,cold,roots,warm,limits,writes"
    )]
    pub only: Vec<Section>,
    /// The JSON results (every number of the tables, and the machine).
    #[arg(long, default_value = "bench/results.json")]
    pub json: PathBuf,
    /// Also write the tables into this markdown file: between its markers when it has them
    /// (the text around them is kept), else as a new file.
    #[arg(long)]
    pub readme: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration like 5s or 1500ms");
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

impl Options {
    fn has(&self, section: Section) -> bool {
        self.only.contains(&section)
    }

    fn path(&self, p: &std::path::Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

/// Runs the selected sections and writes the JSON (and the markdown file when asked).
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let progress = progress_bar(options);
    let mut report = Report::new(machine::Machine::probe(&options.root), options);
    if options.has(Section::Sizes) {
        progress.set_message("bootstrap sizes");
        report.sizes = Some(sizes::measure(
            &options.path(&options.bin_dir),
            &options.root,
        )?);
        progress.inc(1);
    }
    if options.has(Section::Cold)
        || options.has(Section::Roots)
        || options.has(Section::Warm)
        || options.has(Section::Limits)
        || options.has(Section::Writes)
    {
        progress.set_message("starting the local stack");
        let counter = devkit::CallCounter::new();
        let dir = tempfile::tempdir().context("a directory for the local stack")?;
        let stack = Stack::start(&ServeOptions {
            dynamodb_calls: Some(counter.clone()),
            ..ServeOptions::local(dir.path().to_path_buf(), 0, 0, 0)
        })
        .await?;
        let outcome = async {
            if options.has(Section::Cold) {
                report.cold_starts = Some(cold::measure(options, &stack, &[], &progress).await?);
            }
            if options.has(Section::Roots) {
                // Lambda's layout: provided.al2023 keeps the OS trust store as one PEM
                // bundle (/etc/pki/tls/certs/ca-bundle.crt) and no certificate directory of
                // hundreds of files. This machine's bundle, copied there under a temporary
                // root, named by SSL_CERT_FILE; the certificate directory empty.
                let root = tempfile::tempdir()?;
                let certs = root.path().join("etc/pki/tls/certs");
                std::fs::create_dir_all(&certs)?;
                let bundle = certs.join("ca-bundle.crt");
                std::fs::copy("/etc/ssl/certs/ca-certificates.crt", &bundle)
                    .context("copying this machine's CA bundle")?;
                let empty = root.path().join("empty");
                std::fs::create_dir_all(&empty)?;
                let env = [
                    ("SSL_CERT_FILE".to_string(), bundle.display().to_string()),
                    ("SSL_CERT_DIR".to_string(), empty.display().to_string()),
                ];
                report.cold_starts_without_native_roots =
                    Some(cold::measure(options, &stack, &env, &progress).await?);
            }
            if options.has(Section::Warm) {
                let seeded = seed::seed(&stack).await?;
                report.endpoints =
                    Some(warm::measure(options, &stack, &seeded, &counter, &progress).await?);
            }
            if options.has(Section::Limits) {
                progress.set_message("the rate limiter under load");
                report.limits =
                    Some(limits::measure(&stack, &counter, &options.path(&options.oha)).await?);
                progress.inc(1);
            }
            if options.has(Section::Writes) {
                report.writes = Some(writes::measure(options, &stack, &progress).await?);
            }
            anyhow::Ok(())
        }
        .await;
        stack.stop().await?;
        outcome?;
    }
    progress.finish_and_clear();
    let json = options.path(&options.json);
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    if let Some(readme) = &options.readme {
        let readme = options.path(readme);
        let existing = std::fs::read_to_string(&readme).ok();
        std::fs::write(&readme, report.readme(existing.as_deref()))
            .with_context(|| format!("writing {}", readme.display()))?;
    }
    Ok(report)
}

fn progress_bar(options: &Options) -> ProgressBar {
    let mut steps = 0;
    if options.has(Section::Sizes) {
        steps += 1;
    }
    for section in [Section::Cold, Section::Roots] {
        if options.has(section) {
            steps += BINARIES.len() * (options.cold_runs + 1);
        }
    }
    if options.has(Section::Limits) {
        steps += 1;
    }
    if options.has(Section::Warm) {
        steps += endpoints::ENDPOINTS.len() * 2 * options.connections.len();
    }
    if options.has(Section::Writes) {
        steps += 3 * 2 * options.connections.len();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
