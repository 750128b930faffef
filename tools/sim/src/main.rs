//! `make sim`: runs seeds of the fault simulation and prints what they covered; a failing
//! seed prints its replay command and trace, and the run exits 1.

use clap::Parser;
use sim::{Options, SeedReport};
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
    let results = sim::run_seeds(&seeds, &options, args.jobs).await;
    for (seed, result) in results {
        match result {
            Ok(report) => {
                if args.trace {
                    for line in &report.trace {
                        println!("  {line}");
                    }
                    println!("seed {seed}: {}", report.summary());
                }
                total.add(&report);
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
        total.summary(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
