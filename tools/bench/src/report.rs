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
    /// The same cold starts with Lambda's trust-store layout (the `roots` section).
    pub cold_starts_without_native_roots: Option<Vec<ColdRow>>,
    pub endpoints: Option<Vec<EndpointRow>>,
    pub limits: Option<Vec<crate::limits::LimitRow>>,
    pub writes: Option<Vec<crate::writes::WriteRow>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub sections: Vec<Section>,
    pub cold_runs: usize,
    pub connections: Vec<usize>,
    pub duration_s: f64,
    pub worker_threads: usize,
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
                connections: options.connections.clone(),
                duration_s: options.duration.as_secs_f64(),
                worker_threads: options.worker_threads,
                command: "make bench",
            },
            targets: Targets {
                bootstrap_max_bytes: targets::BOOTSTRAP_MAX_BYTES,
                cold_start_max_ratio_to_hello: targets::COLD_START_MAX_RATIO,
                overhead_p99_max_ms: targets::OVERHEAD_P99_MAX_MS,
            },
            sizes: None,
            cold_starts: None,
            cold_starts_without_native_roots: None,
            endpoints: None,
            limits: None,
            writes: None,
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
            let _ = writeln!(
                out,
                "### Cold start (exec → first response, {} runs each; target ≤ {}× hello)\n\n\
                 Each release bootstrap exec'd against `cargo lambda watch --only-lambda-apis` \
                 with its event of `events/` queued, Lambda's environment, DynamoDB and Stripe \
                 local; killed after its first response.\n",
                self.settings.cold_runs,
                targets::COLD_START_MAX_RATIO
            );
            cold_table(&mut out, rows);
        }
        if let Some(rows) = &self.cold_starts_without_native_roots {
            let _ = writeln!(
                out,
                "### Cold start with Lambda's trust-store layout (one bundle file)\n\n\
                 The same, with the OS trust store as `provided.al2023` lays it out: one PEM \
                 bundle (this machine's, copied to a temporary `etc/pki/tls/certs/ca-bundle.crt` \
                 and named by `SSL_CERT_FILE`) and an empty `SSL_CERT_DIR` (this machine's has \
                 {} entries). The functions read no OS trust store (their AWS and Stripe \
                 clients trust compiled-in roots: `shared::aws::AwsHttpClient`), so this row \
                 should match the one above; it is the row that reflects AWS.\n",
                m.ssl_certs_entries
                    .map_or("?".to_string(), |n| n.to_string())
            );
            cold_table(&mut out, rows);
        }
        if let Some(rows) = &self.endpoints {
            warm_table(&mut out, rows, &self.settings, m.cores);
            calls_table(&mut out, rows);
        }
        if let Some(rows) = &self.writes {
            writes_table(&mut out, rows);
        }
        if let Some(rows) = &self.limits {
            limits_table(&mut out, rows);
        }
        out
    }

    /// `bench/README.md` with this run's tables: `existing` with what lies between its
    /// [`BEGIN`] and [`END`] markers replaced (the prose around them is kept), or a new file.
    pub fn readme(&self, existing: Option<&str>) -> String {
        let tables = format!("{BEGIN}\n{}{END}", self.markdown());
        if let Some(text) = existing
            && let Some(start) = text.find(BEGIN)
            && let Some(end) = text.find(END)
            && start < end
        {
            return format!("{}{tables}{}", &text[..start], &text[end + END.len()..]);
        }
        format!(
            "# Benchmarks\n\n\
             `make bench` measures the budgets of DESIGN.md (\"Performance budgets\") and \
             rewrites the tables below (between the markers) and [results.json](results.json). \
             It is a benchmark, not a test: it never fails on a number.\n\n{tables}\n"
        )
    }
}

/// The markers around the generated part of `bench/README.md`.
pub const BEGIN: &str = "<!-- make bench: generated from here -->";
pub const END: &str = "<!-- make bench: to here -->";

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

fn cold_table(out: &mut String, rows: &[ColdRow]) {
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

fn warm_table(out: &mut String, rows: &[EndpointRow], settings: &Settings, cores: usize) {
    let _ = writeln!(
        out,
        "### Warm latency (local stack, release; target: overhead ≤ {} ms at p99)\n\n\
         Endpoint: oha over HTTP for {} s. Floor: the endpoint's DynamoDB calls (same items, \
         operations, order and concurrency within the request) made directly with \
         aws-sdk-dynamodb against the same engine, in-process, for as long and with as many \
         concurrent callers. Overhead = endpoint p99 − floor p99. With one connection nothing \
         queues: the budget is judged there. With more, on {} cores shared by the load \
         generator, the stack and the engine, latency is mostly queueing, and the in-process \
         floor (its callers on the engine's runtime) is no lower bound.\n",
        targets::OVERHEAD_P99_MAX_MS,
        settings.duration_s,
        cores,
    );
    for (i, &connections) in settings.connections.iter().enumerate() {
        let _ = writeln!(
            out,
            "#### {connections} connection{}{}\n",
            if connections == 1 { "" } else { "s" },
            if connections == 1 {
                ": the budget"
            } else {
                " (saturated: a throughput measure, the budget is not judged here)"
            }
        );
        let _ = writeln!(
            out,
            "| Endpoint | Case | req/s | p50 ms | p99 ms | Floor req/s | Floor p50 ms | Floor p99 ms | Overhead p99 ms | × floor p99 | ≤ 1 ms |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
        );
        for row in rows {
            let Some(r) = row.runs.get(i) else { continue };
            let floor = |f: fn(&crate::load::LoadStats) -> f64, digits: usize| {
                r.floor
                    .as_ref()
                    .map_or("–".to_string(), |s| format!("{:.*}", digits, f(s)))
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.2} | {} | {} |",
                row.endpoint,
                row.case,
                r.load.stats.requests_per_sec,
                r.load.stats.p50_ms,
                r.load.stats.p99_ms,
                floor(|s| s.requests_per_sec, 0),
                floor(|s| s.p50_ms, 2),
                floor(|s| s.p99_ms, 2),
                r.overhead_p99_ms,
                r.p99_ratio_to_floor
                    .map_or("–".to_string(), |x| format!("{x:.2}")),
                r.overhead_within_target.map_or("–", yes_no)
            );
        }
        out.push('\n');
    }
}

fn writes_table(out: &mut String, rows: &[crate::writes::WriteRow]) {
    let _ = writeln!(
        out,
        "### Paths that write (local stack, release)\n\n\
         Each request makes something new: two documents unlocked with a credit each, a new \
         analysis counted, a paid report's credit granted by a signed webhook (each for a new \
         buyer). Endpoint: in-process HTTP requests (reqwest), each with a fresh id, for as \
         long as the reads' runs; floor: the same store calls (`shared`'s store API: the same \
         reads and TransactWriteItems) made directly, as many callers. The two alternate in \
         ten slices each, so both meet the engine as the run's writes grow it. oha repeats one \
         request, so it cannot drive these. At one connection the budget is judged.\n"
    );
    let _ = writeln!(
        out,
        "| Endpoint | Case | Connections | req/s | p50 ms | p99 ms | Floor req/s | Floor p50 ms | Floor p99 ms | Overhead p99 ms | × floor p99 | ≤ 1 ms |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.endpoint,
            r.case,
            r.connections,
            r.load.requests_per_sec,
            r.load.p50_ms,
            r.load.p99_ms,
            r.floor.requests_per_sec,
            r.floor.p50_ms,
            r.floor.p99_ms,
            r.overhead_p99_ms,
            r.p99_ratio_to_floor,
            match r.overhead_within_target {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        );
    }
    out.push('\n');
}

fn limits_table(out: &mut String, rows: &[crate::limits::LimitRow]) {
    let _ = writeln!(
        out,
        "### Rate limits under load\n\n\
         oha at {} requests/s over 2 connections for {} s on `GET /v1/billing/tiers` (no \
         DynamoDB call of its own) with a key of each plan. Bound: `rate + 2 × quota / T` per \
         second over `T` s (README). Calls: the limiter's (token leases, the plan's read) per \
         request.\n\n\
         | Plan | RateLimit-Policy | Requests | Admitted | Refused (429) | Admitted/s | Bound/s | Within | DynamoDB calls/request | By operation | p99 ms |\n\
         |---|---|---:|---:|---:|---:|---:|:---:|---:|---|---:|",
        crate::limits::OFFERED_RPS,
        crate::limits::RUN.as_secs()
    );
    for r in rows {
        let by_op = r
            .calls
            .iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {:.1} | {:.1} | {} | {:.3} | {} | {:.2} |",
            r.plan,
            r.policy,
            r.requests,
            r.admitted,
            r.refused,
            r.admitted_per_sec,
            r.bound_per_sec,
            yes_no(r.within_bound),
            r.calls_per_request,
            if by_op.is_empty() {
                "–".into()
            } else {
                by_op
            },
            r.p99_ms
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let options = <Options as clap::Parser>::parse_from(["bench", "--only", "sizes"]);
        let machine = Machine::probe(std::path::Path::new("."));
        Report::new(machine, &options)
    }

    #[test]
    fn the_readme_keeps_its_prose_around_the_tables() {
        let report = report();
        let fresh = report.readme(None);
        assert!(fresh.starts_with("# Benchmarks"));
        assert!(fresh.contains(BEGIN) && fresh.contains(END));

        let edited =
            format!("# Mine\n\nintro\n\n{BEGIN}\nold tables\n{END}\n\n## Findings\nkept\n");
        let again = report.readme(Some(&edited));
        assert!(again.starts_with("# Mine\n\nintro\n\n"), "{again}");
        assert!(
            again.ends_with(&format!("{END}\n\n## Findings\nkept\n")),
            "{again}"
        );
        assert!(!again.contains("old tables"));
        assert!(again.contains("Measured "));

        // Without markers, a new file.
        assert!(
            report
                .readme(Some("no markers"))
                .starts_with("# Benchmarks")
        );
    }
}
