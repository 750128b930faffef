//! Cold starts: each release bootstrap exec'd as the Lambda service does, against
//! `cargo lambda watch --only-lambda-apis` (the Lambda Runtime API, nothing else), with an
//! event queued; the time from exec to the invoke's response, then the process is killed.
//!
//! The environment is Lambda's (function name, memory, version, region, credentials) plus
//! the template's (stage, table names, Stripe), pointed at the local stack's DynamoDB engine
//! and Stripe emulator; nothing else of this machine's environment is passed on.

use crate::{BINARIES, Binary, Options, targets};
use anyhow::{Context, bail};
use devkit::runtime_api::RuntimeApi;
use indicatif::ProgressBar;
use local::serve::Stack;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct ColdRow {
    pub binary: &'static str,
    pub event: &'static str,
    /// The status code of the first response (the `statusCode` of the API Gateway response).
    pub status: Option<u16>,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub ratio_to_hello: f64,
    pub within_target: bool,
    /// Every measured run, in order.
    pub samples_ms: Vec<f64>,
}

/// The environment the Lambda service and template.yaml give a function, pointed at the
/// local stack.
fn environment(binary: &Binary, runtime_api: &str, stack: &Stack) -> Vec<(String, String)> {
    devkit::runtime_api::environment(
        binary.name,
        runtime_api,
        &stack.dynamodb_endpoint,
        stack.stripe.base_url(),
    )
}

/// The binary's event from `events/`, with the development key, and for the webhook a
/// fresh event id (each run processes its event) signed now.
fn event(root: &Path, binary: &Binary, api_key: &str, run: usize) -> anyhow::Result<String> {
    let path = root.join("events").join(binary.event);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .replace(local::invoke::KEY_PLACEHOLDER, api_key);
    let mut event: serde_json::Value = serde_json::from_str(&text)?;
    if event["headers"]["stripe-signature"] == local::invoke::SIGNATURE_PLACEHOLDER {
        let mut body: serde_json::Value =
            serde_json::from_str(event["body"].as_str().unwrap_or("{}"))?;
        // New in every section too (`cold`, then `roots`): a repeated id is a duplicate
        // delivery, which the webhook answers from one read.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        body["id"] = format!("evt_bench_cold_{}_{nanos}_{run}", std::process::id()).into();
        let body = body.to_string();
        event["headers"]["stripe-signature"] = crate::seed::sign(&body).into();
        event["body"] = body.into();
    }
    Ok(event.to_string())
}

/// One cold start: queue the invoke, exec the bootstrap, wait for the response, kill it.
async fn cold_start(
    watch: &RuntimeApi,
    http: &reqwest::Client,
    bootstrap: &Path,
    env: &[(String, String)],
    event: String,
    log: &Path,
) -> anyhow::Result<(Duration, Option<u16>)> {
    let invoke = http.post(watch.invoke_url()).body(event).send();
    let invoke = tokio::spawn(async move {
        let response = invoke.await?.error_for_status()?;
        anyhow::Ok(response.text().await?)
    });
    // Let the invoke reach the emulator's queue before the clock starts.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(bootstrap)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bootstrap.display()))?;
    let response = tokio::time::timeout(Duration::from_secs(30), invoke).await;
    let elapsed = started.elapsed();
    let _ = child.kill().await;
    let body = match response {
        Ok(joined) => joined??,
        Err(_) => bail!("{} did not answer within 30 s", bootstrap.display()),
    };
    let status = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["statusCode"].as_u64())
        .and_then(|s| u16::try_from(s).ok());
    Ok((elapsed, status))
}

/// Every binary's cold starts; `extra_env` is added to the environment of each.
pub async fn measure(
    options: &Options,
    stack: &Stack,
    extra_env: &[(String, String)],
    progress: &ProgressBar,
) -> anyhow::Result<Vec<ColdRow>> {
    let logs = tempfile::tempdir()?;
    progress.set_message("starting cargo lambda watch --only-lambda-apis");
    let watch = RuntimeApi::start(
        &options.path(&options.cargo_lambda),
        &options.root,
        &logs.path().join("watch.log"),
    )
    .await?;
    let outcome = measure_with(options, stack, &watch, extra_env, logs.path(), progress).await;
    watch.stop().await;
    if outcome.is_err() {
        // Keep the logs of a failed run for whoever debugs it.
        let kept = logs.keep();
        eprintln!("cold start logs kept in {}", kept.display());
    }
    outcome
}

async fn measure_with(
    options: &Options,
    stack: &Stack,
    watch: &RuntimeApi,
    extra_env: &[(String, String)],
    logs: &Path,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<ColdRow>> {
    let http = reqwest::Client::new();
    let bin_dir = options.path(&options.bin_dir);
    let api_key = stack.api_key.expose().to_string();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); BINARIES.len()];
    let mut statuses: Vec<Option<u16>> = vec![None; BINARIES.len()];
    // Round-robin, so that whatever else the machine does spreads over every binary; run 0
    // of each (page cache, the emulator's first connection) is not measured.
    for run in 0..=options.cold_runs {
        for (i, binary) in BINARIES.iter().enumerate() {
            progress.set_message(format!("cold start {}: run {run}", binary.name));
            let bootstrap: PathBuf = bin_dir.join(binary.name);
            let mut env = environment(binary, &watch.runtime_api(), stack);
            env.extend_from_slice(extra_env);
            let event = event(&options.root, binary, &api_key, run)?;
            let log = logs.join(format!("{}.log", binary.name));
            let (elapsed, status) = cold_start(watch, &http, &bootstrap, &env, event, &log)
                .await
                .with_context(|| {
                    format!("cold start of {} (logs: {})", binary.name, log.display())
                })?;
            if run == 0 {
                statuses[i] = status;
            } else {
                samples[i].push(elapsed);
            }
            progress.inc(1);
        }
    }
    let median = |s: &[Duration]| {
        let mut sorted = s.to_vec();
        sorted.sort_unstable();
        ms(median_of(&sorted))
    };
    let hello_median = median(&samples[0]);
    Ok(BINARIES
        .iter()
        .zip(samples)
        .zip(statuses)
        .map(|((binary, samples), status)| {
            let median_ms = median(&samples);
            let ratio = median_ms / hello_median;
            ColdRow {
                binary: binary.name,
                event: binary.event,
                status,
                runs: samples.len(),
                median_ms,
                min_ms: samples.iter().copied().min().map_or(0.0, ms),
                max_ms: samples.iter().copied().max().map_or(0.0, ms),
                ratio_to_hello: ratio,
                within_target: ratio <= targets::COLD_START_MAX_RATIO,
                samples_ms: samples.iter().copied().map(ms).collect(),
            }
        })
        .collect())
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

/// The median of sorted samples (the mean of the middle two for an even count).
fn median_of(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        let ms = Duration::from_millis;
        assert_eq!(median_of(&[ms(1), ms(5), ms(9)]), ms(5));
        assert_eq!(median_of(&[ms(1), ms(3), ms(5), ms(9)]), ms(4));
        assert_eq!(median_of(&[]), Duration::ZERO);
    }
}
