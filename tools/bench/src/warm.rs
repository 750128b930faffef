//! Warm latency, throughput and DynamoDB calls per request of each endpoint on the local
//! stack, next to its floor.

use crate::endpoints::{ENDPOINTS, Endpoint, Floor, FloorContext};
use crate::load::{self, HttpRequest, LoadStats, OhaRun};
use crate::seed::Seeded;
use crate::{Options, targets};
use anyhow::{Context, bail};
use devkit::CallCounter;
use indicatif::ProgressBar;
use local::serve::Stack;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct EndpointRow {
    pub endpoint: String,
    pub function: &'static str,
    pub case: &'static str,
    /// One load run per concurrency.
    pub runs: Vec<LoadRun>,
    /// DynamoDB calls one request makes, by operation (the most frequent count over
    /// `CALL_SAMPLES` requests, key cache warm).
    pub calls: BTreeMap<String, u64>,
    pub calls_total: u64,
    pub calls_min: u32,
    pub calls_min_reason: &'static str,
}

/// The endpoint and its floor at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    pub connections: usize,
    pub load: OhaRun,
    /// The same DynamoDB calls made directly, same concurrency and duration; none when the
    /// endpoint makes no call.
    pub floor: Option<LoadStats>,
    /// Endpoint p99 − floor p99 (the endpoint's p99 when it has no floor).
    pub overhead_p99_ms: f64,
    /// Endpoint p99 / floor p99.
    pub p99_ratio_to_floor: Option<f64>,
    /// Whether the overhead is within the budget; judged at one connection only (with more,
    /// latency is queueing).
    pub overhead_within_target: Option<bool>,
}

/// Requests whose calls are counted, one at a time; the most frequent count is reported (a
/// key cache entry expiring during the count adds a read to one request).
pub const CALL_SAMPLES: usize = 10;

/// The HTTP request of `endpoint` on the stack at `api_url` (webhooks signed now).
pub fn request(api_url: &str, endpoint: &Endpoint, seeded: &Seeded) -> HttpRequest {
    let mut headers = Vec::new();
    let mut body = endpoint.body.map(str::to_string);
    if endpoint.webhook {
        headers.push((
            "stripe-signature".to_string(),
            crate::seed::sign(&seeded.webhook_payload),
        ));
        body = Some(seeded.webhook_payload.clone());
    } else {
        headers.push((
            "authorization".to_string(),
            format!("Bearer {}", seeded.api_key),
        ));
    }
    if body.is_some() {
        headers.push(("content-type".to_string(), "application/json".to_string()));
    }
    HttpRequest {
        method: endpoint.method,
        url: format!("{api_url}{}", endpoint.path),
        headers,
        body,
    }
}

/// Sends `request` once; anything but a 200 is an error (the seeded state answers 200).
pub async fn send(http: &reqwest::Client, request: &HttpRequest) -> anyhow::Result<()> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
    let mut builder = http.request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder.send().await?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        let text = response.text().await.unwrap_or_default();
        bail!(
            "{} {} answered {status}: {text}",
            request.method,
            request.url
        );
    }
    Ok(())
}

/// The DynamoDB calls of one request, by operation (after the caller warmed the key cache).
pub async fn count_calls(
    http: &reqwest::Client,
    request: &HttpRequest,
    counter: &CallCounter,
) -> anyhow::Result<BTreeMap<String, u64>> {
    counter.reset();
    send(http, request).await?;
    Ok(counter.take())
}

/// The calls of one request with everything warm: the fewest of three requests, so a
/// rate-limit lease (one UpdateItem when a new window starts, amortized over the window:
/// see `rate_limiter_calls`) does not count against the endpoint.
pub async fn count_warm_calls(
    http: &reqwest::Client,
    request: &HttpRequest,
    counter: &CallCounter,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut fewest: Option<BTreeMap<String, u64>> = None;
    for _ in 0..3 {
        let calls = count_calls(http, request, counter).await?;
        let total = |c: &BTreeMap<String, u64>| c.values().sum::<u64>();
        if fewest.as_ref().is_none_or(|f| total(&calls) < total(f)) {
            fewest = Some(calls);
        }
    }
    Ok(fewest.unwrap_or_default())
}

pub async fn measure(
    options: &Options,
    stack: &Stack,
    seeded: &Seeded,
    counter: &CallCounter,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<EndpointRow>> {
    let http = reqwest::Client::new();
    let oha = options.path(&options.oha);
    let floor = FloorContext {
        client: shared::store::local_client(&stack.dynamodb_endpoint),
        seeded: seeded.clone(),
    };
    let mut rows = Vec::new();
    for endpoint in &ENDPOINTS {
        let name = endpoint.name();
        progress.set_message(format!("{name}: warm-up and DynamoDB calls"));
        // Signed once per endpoint: oha sends the same headers for the whole run, well
        // within the webhook's 300 s tolerance.
        let request = request(&stack.api_url, endpoint, seeded);
        for _ in 0..20 {
            send(&http, &request)
                .await
                .with_context(|| format!("warming up {name}"))?;
        }
        let mut samples: BTreeMap<BTreeMap<String, u64>, usize> = BTreeMap::new();
        for _ in 0..CALL_SAMPLES {
            *samples
                .entry(count_calls(&http, &request, counter).await?)
                .or_default() += 1;
        }
        let calls = samples
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(calls, _)| calls)
            .unwrap_or_default();

        let mut runs = Vec::new();
        for &connections in &options.connections {
            runs.push(
                load_run(
                    options,
                    &oha,
                    &request,
                    endpoint,
                    &floor,
                    connections,
                    progress,
                )
                .await
                .with_context(|| format!("{name} at {connections} connections"))?,
            );
        }
        rows.push(EndpointRow {
            endpoint: name,
            function: endpoint.function,
            case: endpoint.case,
            runs,
            calls_total: calls.values().sum(),
            calls,
            calls_min: endpoint.min_calls,
            calls_min_reason: endpoint.min_reason,
        });
    }
    Ok(rows)
}

/// oha on the endpoint, then its floor, both at `connections`.
async fn load_run(
    options: &Options,
    oha: &std::path::Path,
    request: &HttpRequest,
    endpoint: &Endpoint,
    floor: &FloorContext,
    connections: usize,
    progress: &ProgressBar,
) -> anyhow::Result<LoadRun> {
    let name = endpoint.name();
    progress.set_message(format!(
        "{name}: oha, {connections} connections, {:?}",
        options.duration
    ));
    let load = load::oha(oha, request, connections, options.duration).await?;
    if load.status_codes.keys().any(|code| code != "200") || !load.errors.is_empty() {
        bail!(
            "under load it answered {:?} with errors {:?}",
            load.status_codes,
            load.errors
        );
    }
    progress.inc(1);

    progress.set_message(format!(
        "{name}: the floor (its DynamoDB calls, direct), {connections} callers"
    ));
    let floor_stats = match endpoint.floor {
        Floor::None => None,
        kind => {
            let ctx = floor.clone();
            ctx.run(kind).await.context("the floor's calls")?;
            Some(
                load::in_process(connections, options.duration, move || {
                    let ctx = ctx.clone();
                    async move { ctx.run(kind).await }
                })
                .await?,
            )
        }
    };
    progress.inc(1);

    let floor_p99 = floor_stats.as_ref().map_or(0.0, |f| f.p99_ms);
    let overhead = load.stats.p99_ms - floor_p99;
    Ok(LoadRun {
        connections,
        p99_ratio_to_floor: floor_stats.as_ref().map(|f| load.stats.p99_ms / f.p99_ms),
        overhead_within_target: (connections == 1)
            .then_some(overhead <= targets::OVERHEAD_P99_MAX_MS),
        overhead_p99_ms: overhead,
        load,
        floor: floor_stats,
    })
}
