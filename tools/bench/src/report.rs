//! The results: JSON (`bench/results.json`) and markdown tables.

use crate::cold::ColdRow;
use crate::machine::Machine;
use crate::sizes::SizeRow;
use crate::warm::EndpointRow;
use crate::{Options, Section, targets};
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub targets: Targets,
    pub sizes: Option<Vec<SizeRow>>,
    pub cold_starts: Option<Vec<ColdRow>>,
    pub endpoints: Option<Vec<EndpointRow>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub sections: Vec<Section>,
    pub cold_runs: usize,
    pub connections: usize,
    pub duration_s: f64,
    pub command: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    pub bootstrap_max_bytes: u64,
    pub cold_start_max_ratio_to_hello: f64,
    pub overhead_p99_max_ms: f64,
}

impl Report {
    pub fn new(machine: Machine, options: &Options) -> Self {
        Self {
            machine,
            settings: Settings {
                sections: options.only.clone(),
                cold_runs: options.cold_runs,
                connections: options.connections,
                duration_s: options.duration.as_secs_f64(),
                command: "make bench",
            },
            targets: Targets {
                bootstrap_max_bytes: targets::BOOTSTRAP_MAX_BYTES,
                cold_start_max_ratio_to_hello: targets::COLD_START_MAX_RATIO,
                overhead_p99_max_ms: targets::OVERHEAD_P99_MAX_MS,
            },
            sizes: None,
            cold_starts: None,
            endpoints: None,
        }
    }

    /// The tables, each with a line saying how it was measured.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Measured {} on {} ({} cores, {}, load average {}), commit {}{}.\n",
            m.date,
            m.cpu_model,
            m.cores,
            m.arch,
            m.load_average.as_deref().unwrap_or("?"),
            m.git_commit
                .as_deref()
                .map_or("?", |c| &c[..c.len().min(12)]),
            if m.git_dirty == Some(true) {
                " (with uncommitted changes)"
            } else {
                ""
            },
        );
        if let Some(rows) = &self.sizes {
            sizes_table(&mut out, rows);
        }
        if let Some(rows) = &self.cold_starts {
            cold_table(&mut out, rows, self.settings.cold_runs);
        }
        if let Some(rows) = &self.endpoints {
            warm_table(&mut out, rows, &self.settings);
            calls_table(&mut out, rows);
        }
        out
    }

    /// `bench/README.md`: how to run it, then the tables.
    pub fn readme(&self) -> String {
        format!(
            "# Benchmarks\n\n\
             Written by `make bench` (the budgets are DESIGN.md's \"Performance budgets\"); every \
             number is also in [results.json](results.json), with the machine. `make bench` builds \
             the five functions and `tools/hello` (a hello-world lambda_http binary) with the \
             release profile, installs oha 1.16.0 in `target/tools/` and cargo-lambda in \
             `.venv-sam/`, then runs `target/release/bench` (`--help` for its options). \
             It is a benchmark, not a test: it never fails on a number. The machine is shared, \
             so absolute numbers move between runs; the ratios within one run are what to read.\n\n\
             {}",
            self.markdown()
        )
    }
}

fn yes_no(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn sizes_table(out: &mut String, rows: &[SizeRow]) {
    let _ = writeln!(
        out,
        "### Bootstrap size (release, stripped; target ≤ {} MB)\n",
        targets::BOOTSTRAP_MAX_BYTES as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "| Binary | x86_64 bytes | MB | × hello | ≤ 6 MB | arm64 (`make build`) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|:---:|---:|");
    for r in rows {
        let arm64 = match r.arm64_bytes {
            Some(b) => format!("{:.2} MB", b as f64 / 1e6),
            None if r.binary == crate::HELLO.name => "–".to_string(),
            None => "not built".to_string(),
        };
        let stripped = match r.stripped {
            Some(false) => " (not stripped)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| {}{stripped} | {} | {:.2} | {:.2} | {} | {arm64} |",
            r.binary,
            r.bytes,
            r.mb,
            r.ratio_to_hello,
            yes_no(r.within_target)
        );
    }
    out.push('\n');
}

fn cold_table(out: &mut String, rows: &[ColdRow], runs: usize) {
    let _ = writeln!(
        out,
        "### Cold start (exec → first response, {runs} runs each; target ≤ {}× hello)\n",
        targets::COLD_START_MAX_RATIO
    );
    let _ = writeln!(
        out,
        "Each release bootstrap exec'd against `cargo lambda watch --only-lambda-apis` with its \
         event of `events/` queued, Lambda's environment, DynamoDB and Stripe local; killed \
         after its first response.\n"
    );
    let _ = writeln!(
        out,
        "| Binary | Event | First status | Median ms | Min ms | Max ms | × hello | ≤ 2× |"
    );
    let _ = writeln!(out, "|---|---|:---:|---:|---:|---:|---:|:---:|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            r.binary,
            r.event,
            r.status.map_or("?".to_string(), |s| s.to_string()),
            r.median_ms,
            r.min_ms,
            r.max_ms,
            r.ratio_to_hello,
            yes_no(r.within_target)
        );
    }
    out.push('\n');
}

fn warm_table(out: &mut String, rows: &[EndpointRow], settings: &Settings) {
    let _ = writeln!(
        out,
        "### Warm latency (local stack, release; {} connections, {} s each; target: overhead ≤ {} ms at p99)\n",
        settings.connections,
        settings.duration_s,
        targets::OVERHEAD_P99_MAX_MS
    );
    let _ = writeln!(
        out,
        "Endpoint: oha over HTTP. Floor: the endpoint's DynamoDB calls (same items, operations, \
         order) made directly with aws-sdk-dynamodb against the same engine, same concurrency, \
         in-process. Overhead = endpoint p99 − floor p99.\n"
    );
    let _ = writeln!(
        out,
        "| Endpoint | Case | req/s | p50 ms | p99 ms | Floor req/s | Floor p50 ms | Floor p99 ms | Overhead p99 ms | × floor p99 | ≤ 1 ms |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
    );
    for r in rows {
        let floor = |f: fn(&crate::load::LoadStats) -> f64, digits: usize| {
            r.floor
                .as_ref()
                .map_or("–".to_string(), |s| format!("{:.*}", digits, f(s)))
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {} | {} |",
            r.endpoint,
            r.case,
            r.load.stats.requests_per_sec,
            r.load.stats.p50_ms,
            r.load.stats.p99_ms,
            floor(|s| s.requests_per_sec, 0),
            floor(|s| s.p50_ms, 2),
            floor(|s| s.p99_ms, 2),
            r.overhead_p99_ms,
            r.p99_ratio_to_floor
                .map_or("–".to_string(), |x| format!("{x:.2}")),
            yes_no(r.overhead_within_target)
        );
    }
    out.push('\n');
}

fn calls_table(out: &mut String, rows: &[EndpointRow]) {
    let _ = writeln!(
        out,
        "### DynamoDB calls per request (key cache warm)\n\n\
         Counted by an SDK interceptor on the stack's client. The minimum is the fewest calls \
         the endpoint's logic allows (reasons in `tools/bench/src/endpoints.rs`).\n"
    );
    let _ = writeln!(
        out,
        "| Endpoint | Calls | By operation | Minimum | At minimum |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|:---:|");
    for r in rows {
        let by_op = if r.calls.is_empty() {
            "–".to_string()
        } else {
            r.calls
                .iter()
                .map(|(op, n)| format!("{op} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {by_op} | {} | {} |",
            r.endpoint,
            r.calls_total,
            r.calls_min,
            yes_no(r.calls_total <= u64::from(r.calls_min))
        );
    }
    out.push('\n');
}
