//! The simulation in CI: a fixed batch of seeds (`make sim` runs as many as asked).

use sim::{Options, run_seeds};

/// Seeds 1-16 of 60 steps, four at a time: about 30 s on the 2-core machine.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fixed_batch_of_seeds_keeps_every_invariant() {
    let seeds: Vec<u64> = SEEDS.collect();
    let results = run_seeds(&seeds, &Options { ops: 60 }, 4).await;
    let mut failures = Vec::new();
    let mut checks = 0;
    for (_, result) in results {
        match result {
            Ok(report) => checks += report.checks,
            Err(violation) => failures.push(violation.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checks > 10_000,
        "the batch checked only {checks} invariants"
    );
}
