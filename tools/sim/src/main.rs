//! `make sim`: runs seeds of the fault simulation and prints what they covered; a failing
//! seed prints its replay command and trace, and the run exits 1.

use clap::Parser;
use sim::{Options, SeedReport, run_seed};
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "A seeded fault simulation of the Billing API")]
struct Args {
    /// How many seeds to run (from --first).
    #[arg(long, env = "SEEDS", default_value_t = 20)]
    seeds: u64,
    /// The first seed.
    #[arg(long, env = "FIRST_SEED", default_value_t = 1)]
    first: u64,
    /// Run this one seed only (a replay).
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// Steps per seed.
    #[arg(long, env = "OPS", default_value_t = 60)]
    ops: usize,
    /// Print every seed's trace, not only a failing one's.
    #[arg(long)]
    trace: bool,
    /// Seeds run at once (each in its own world; they mostly wait on time, not CPU).
    #[arg(long, env = "JOBS", default_value_t = 4)]
    jobs: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        shared::telemetry::init();
    }
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first..args.first.saturating_add(args.seeds)).collect(),
    };
    let options = Options { ops: args.ops };
    let started = Instant::now();
    let mut total = SeedReport::default();
    let mut failed = Vec::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for seed in seeds.clone() {
        let (gate, options) = (gate.clone(), options.clone());
        running.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (seed, run_seed(seed, &options).await)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = running.join_next().await {
        match done {
            Ok(result) => results.push(result),
            Err(e) => {
                eprintln!("a seed's task failed: {e}");
                failed.push(u64::MAX);
            }
        }
    }
    results.sort_by_key(|(seed, _)| *seed);
    for (seed, result) in results {
        match result {
            Ok(report) => {
                if args.trace {
                    for line in &report.trace {
                        println!("  {line}");
                    }
                    println!("seed {seed}: {}", summary_of(&report));
                }
                add(&mut total, &report);
            }
            Err(violation) => {
                eprintln!("{violation}");
                failed.push(seed);
            }
        }
    }
    println!(
        "sim: {} seeds ({} failed{}), {} | {:.1}s",
        seeds.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {failed:?}")
        },
        summary_of(&total),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

fn add(total: &mut SeedReport, report: &SeedReport) {
    total.ops += report.ops;
    total.requests += report.requests;
    total.deliveries += report.deliveries;
    total.checks += report.checks;
    for (k, v) in &report.faults {
        *total.faults.entry(k).or_default() += v;
    }
    for (k, v) in &report.answers {
        *total.answers.entry(k.clone()).or_default() += v;
    }
}

fn summary_of(r: &SeedReport) -> String {
    let faults: Vec<String> = r.faults.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let answers: Vec<String> = r.answers.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} ops, {} requests, {} webhook deliveries, {} invariant checks | answers {} | faults {}",
        r.ops,
        r.requests,
        r.deliveries,
        r.checks,
        answers.join(" "),
        faults.join(" ")
    )
}
