//! schemathesis (pinned in tools/python/requirements.txt, installed into .venv by `make`)
//! against the whole local stack, from the document the API serves: generated valid and
//! invalid requests for every operation, with its default checks (no 5xx, every status and
//! body as documented, invalid input refused, valid input accepted, 401 without a key, 405
//! for other methods…). `schemathesis.toml` beside this file states what two statuses mean
//! and turns one check off for two operations, each with its reason.
//!
//! The Stripe calls (checkout, portal, purchase) go to the emulator the stack starts.

use local::serve::{ServeOptions, Stack};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where `make` (`$(VENV)/.installed`) installs schemathesis.
const SCHEMATHESIS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/schemathesis");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");

/// Test cases per operation and phase: enough to find what a schema and the code disagree on,
/// few enough to finish in about a minute on two cores.
const MAX_EXAMPLES: &str = "60";
/// The same requests every run, so a failure reproduces.
const SEED: &str = "1";
/// A run that takes longer than this is stuck: it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_passes_schemathesis_default_checks() {
    assert!(
        Path::new(SCHEMATHESIS).exists(),
        "schemathesis is not installed: run `make .venv/.installed` (`make test` does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&ServeOptions {
        webhook_retry_base: Duration::from_millis(20),
        webhook_max_attempts: 3,
        ..ServeOptions::local(dir.path().join("stack"), 0, 0, 0)
    })
    .await
    .unwrap();
    let schema_url = format!("{}/v1/openapi.json", stack.api_url);
    let mut command = Command::new(SCHEMATHESIS);
    command
        .args(["--config-file", CONFIG, "run", &schema_url])
        // The document's servers name production and `make dev`: test this stack instead.
        .args(["--url", &stack.api_url])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", stack.api_key.expose()),
        ])
        .args(["--seed", SEED, "--max-examples", MAX_EXAMPLES])
        // One worker: hypothesis's lambda descriptions call `ast.parse`, which Python 3.11
        // breaks when two threads run it at once ("AST constructor recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "10"])
        // Nothing is written beside the sources: no example database, no colors in the log.
        .args(["--generation-database", "none", "--no-color"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (status, output) = tokio::task::spawn_blocking(move || run(command))
        .await
        .unwrap();
    stack.stop().await.unwrap();
    // Operations tested, test cases, and the closing line (failures, warnings, time).
    let summary: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("Tested:") || l.contains(" generated, ") || l.starts_with("=====")
        })
        .collect();
    eprintln!(
        "schemathesis ({:.0?} with the stack): {}",
        started.elapsed(),
        summary
            .last_chunk::<3>()
            .map_or(&summary[..], |s| &s[..])
            .join(" | ")
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "schemathesis failed ({status:?}):\n{output}"
    );
}

/// Runs the command to its end (or kills it at the deadline); its exit status, if it exited,
/// and everything it printed.
fn run(mut command: Command) -> (Option<std::process::ExitStatus>, String) {
    let mut child = command.spawn().expect("schemathesis starts");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        match child.try_wait().expect("schemathesis can be waited for") {
            Some(status) => break Some(status),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, output)
}
