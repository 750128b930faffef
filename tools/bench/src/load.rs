//! Load generation: oha against an HTTP endpoint, and an in-process equivalent for the
//! floor (the same DynamoDB calls, made directly), with the same concurrency and duration.

use anyhow::{Context, bail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency percentiles and throughput of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadStats {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What oha reports, plus the status codes it saw.
#[derive(Debug, Clone, Serialize)]
pub struct OhaRun {
    #[serde(flatten)]
    pub stats: LoadStats,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

/// An HTTP request as oha sends it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

/// Runs oha: `connections` keep-alive connections for `duration`, waiting for the requests
/// in flight at the deadline, JSON output.
pub async fn oha(
    oha: &Path,
    request: &HttpRequest,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<OhaRun> {
    oha_at_rate(oha, request, connections, duration, None).await
}

/// [`oha`], sending at most `qps` requests per second in all when given (oha's `-q`).
pub async fn oha_at_rate(
    oha: &Path,
    request: &HttpRequest,
    connections: usize,
    duration: Duration,
    qps: Option<u32>,
) -> anyhow::Result<OhaRun> {
    let mut command = tokio::process::Command::new(oha);
    command
        .arg("--no-tui")
        .args(["--output-format", "json"])
        .args(["-c", &connections.to_string()])
        .args(["-z", &format!("{}ms", duration.as_millis())])
        .arg("-w")
        .args(["-m", request.method]);
    if let Some(qps) = qps {
        command.args(["-q", &qps.to_string()]);
    }
    for (name, value) in &request.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    if let Some(body) = &request.body {
        command.args(["-d", body]);
    }
    command.arg(&request.url).kill_on_drop(true);
    let out = command
        .output()
        .await
        .with_context(|| format!("running {} (make bench installs it)", oha.display()))?;
    if !out.status.success() {
        bail!(
            "oha failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_oha(&out.stdout)
}

fn parse_oha(json: &[u8]) -> anyhow::Result<OhaRun> {
    let v: serde_json::Value = serde_json::from_slice(json).context("oha's JSON output")?;
    let secs_to_ms = |x: &serde_json::Value| x.as_f64().map(|s| s * 1e3);
    let percentile = |p: &str| {
        secs_to_ms(&v["latencyPercentiles"][p])
            .with_context(|| format!("oha's JSON has no latencyPercentiles.{p}: {v}"))
    };
    let counts = |key: &str| -> BTreeMap<String, u64> {
        v[key]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let status_codes = counts("statusCodeDistribution");
    Ok(OhaRun {
        stats: LoadStats {
            requests: status_codes.values().sum(),
            requests_per_sec: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
            p50_ms: percentile("p50")?,
            p99_ms: percentile("p99")?,
            max_ms: secs_to_ms(&v["summary"]["slowest"]).unwrap_or(0.0),
        },
        status_codes,
        errors: counts("errorDistribution"),
    })
}

/// Calls `work` from `concurrency` tasks in a loop for `duration`, timing each call.
pub async fn in_process<F, Fut>(
    concurrency: usize,
    duration: Duration,
    work: F,
) -> anyhow::Result<LoadStats>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let mut samples = Samples::default();
    samples.run(concurrency, duration, Arc::new(work)).await?;
    Ok(samples.stats())
}

/// Two loads timed in alternating slices, `slices` each, for `duration` in all per load:
/// the local engine slows down as a run writes to it (its log grows, checkpoints come), so
/// a load timed wholly before the other would be judged against a different engine.
pub async fn in_process_alternating<F, G, FutF, FutG>(
    concurrency: usize,
    duration: Duration,
    slices: u32,
    first: F,
    second: G,
) -> anyhow::Result<(LoadStats, LoadStats)>
where
    F: Fn() -> FutF + Send + Sync + 'static,
    FutF: Future<Output = anyhow::Result<()>> + Send,
    G: Fn() -> FutG + Send + Sync + 'static,
    FutG: Future<Output = anyhow::Result<()>> + Send,
{
    let slice = duration / slices.max(1);
    let (first, second) = (Arc::new(first), Arc::new(second));
    let (mut a, mut b) = (Samples::default(), Samples::default());
    for _ in 0..slices.max(1) {
        a.run(concurrency, slice, first.clone()).await?;
        b.run(concurrency, slice, second.clone()).await?;
    }
    Ok((a.stats(), b.stats()))
}

/// Call times collected over one or more timed runs.
#[derive(Default)]
struct Samples {
    samples: Vec<Duration>,
    elapsed: Duration,
}

impl Samples {
    async fn run<F, Fut>(
        &mut self,
        concurrency: usize,
        duration: Duration,
        work: Arc<F>,
    ) -> anyhow::Result<()>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send,
    {
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let work = work.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        work().await?;
                        samples.push(t.elapsed());
                    }
                    anyhow::Ok(samples)
                })
            })
            .collect();
        for task in tasks {
            self.samples.extend(task.await??);
        }
        self.elapsed += started.elapsed();
        Ok(())
    }

    fn stats(mut self) -> LoadStats {
        stats(&mut self.samples, self.elapsed)
    }
}

/// Percentiles (nearest rank) and throughput of `samples` collected over `elapsed`.
pub fn stats(samples: &mut [Duration], elapsed: Duration) -> LoadStats {
    samples.sort_unstable();
    let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
    LoadStats {
        requests: samples.len() as u64,
        requests_per_sec: samples.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(samples, 50.0).map_or(0.0, ms),
        p99_ms: percentile(samples, 99.0).map_or(0.0, ms),
        max_ms: samples.last().copied().map_or(0.0, ms),
    }
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = stats(&mut samples, Duration::from_secs(2));
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(s.requests, 100);
        assert_eq!(s.requests_per_sec, 50.0);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99.0),
            Some(Duration::from_millis(7))
        );
    }

    #[test]
    fn reads_ohas_json() {
        let json = br#"{"summary": {"successRate": 1.0, "total": 2.0, "slowest": 0.004,
            "fastest": 0.001, "average": 0.002, "requestsPerSec": 1234.5},
            "latencyPercentiles": {"p10": 0.001, "p50": 0.002, "p99": 0.003},
            "statusCodeDistribution": {"200": 2469}, "errorDistribution": {}}"#;
        let run = parse_oha(json).unwrap();
        assert_eq!(run.stats.requests, 2469);
        assert_eq!(run.stats.requests_per_sec, 1234.5);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(run.stats.p50_ms, 2.0) && close(run.stats.p99_ms, 3.0));
        assert!(close(run.stats.max_ms, 4.0));
        assert!(run.errors.is_empty());
    }
}
