//! A ministack process (a local AWS emulator, from PyPI, pinned in
//! `tools/python/requirements.txt`) serving Secrets Manager on a free port: what the tests of
//! code that reads secrets run against. Each instance keeps its state in memory, with its
//! own temporary directory, and is killed when dropped.

use anyhow::{Context, bail};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `make test` (`$(VENV)/.installed`) installs ministack.
const EXECUTABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/ministack");

/// How long a ministack may take to answer its health check.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Tries with another port if the chosen one was taken between choosing and binding.
const ATTEMPTS: usize = 3;

/// A running ministack; the process is killed when this is dropped.
pub struct Ministack {
    pub endpoint: String,
    child: Child,
    // Its pid file, log and (disabled) state directory; removed after the child is killed.
    _dir: tempfile::TempDir,
}

/// Starts a fresh ministack with Secrets Manager on a free port of 127.0.0.1 and waits
/// until it answers its health check.
pub async fn start() -> anyhow::Result<Ministack> {
    let executable = Path::new(EXECUTABLE);
    if !executable.exists() {
        bail!(
            "ministack is not installed: run `make test`, which installs it into .venv \
             (looked for {})",
            executable.display()
        );
    }
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match start_once(executable).await {
            Ok(ministack) => return Ok(ministack),
            Err(Start::Exited(e)) => last_error = Some(e),
            Err(Start::Failed(e)) => return Err(e),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("ministack did not start"))
        .context(format!("ministack exited early {ATTEMPTS} times")))
}

enum Start {
    /// The process exited before it was ready (e.g. the port was taken meanwhile): retry.
    Exited(anyhow::Error),
    Failed(anyhow::Error),
}

async fn start_once(executable: &Path) -> Result<Ministack, Start> {
    let dir = tempfile::tempdir()
        .context("creating a temporary directory for ministack")
        .map_err(Start::Failed)?;
    let port = free_port().map_err(Start::Failed)?;
    let log_path = dir.path().join("ministack.log");
    let log = File::create(&log_path)
        .context("creating ministack's log file")
        .map_err(Start::Failed)?;
    let log_err = log
        .try_clone()
        .context("duplicating ministack's log file")
        .map_err(Start::Failed)?;
    let child = Command::new(executable)
        .env("BIND_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", port.to_string())
        .env("SERVICES", "secretsmanager")
        // In memory only, whatever the surrounding environment says; the pid file
        // (written to TMPDIR) and anything else it writes stay in this instance's directory.
        .env("PERSIST_STATE", "0")
        .env("S3_PERSIST", "0")
        .env("LOCALSTACK_PERSISTENCE", "0")
        .env("STATE_DIR", dir.path().join("state"))
        .env("S3_DATA_DIR", dir.path().join("s3"))
        .env("TMPDIR", dir.path())
        .env_remove("AUTH")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("spawning {}", executable.display()))
        .map_err(Start::Failed)?;
    let mut ministack = Ministack {
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
        _dir: dir,
    };
    ministack.wait_ready(&log_path).await?;
    Ok(ministack)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Ministack {
    async fn wait_ready(&mut self, log_path: &Path) -> Result<(), Start> {
        let health = format!("{}/_ministack/health", self.endpoint);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .context("building an HTTP client")
            .map_err(Start::Failed)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Start::Exited(anyhow::anyhow!(
                    "ministack exited ({status}) before it was ready; its log:\n{}",
                    log_tail(log_path)
                )));
            }
            if let Ok(response) = http.get(&health).send().await
                && response.status().is_success()
                && let Ok(body) = response.text().await
                && body.contains("secretsmanager")
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Start::Failed(anyhow::anyhow!(
                    "ministack did not answer {health} within {}s; its log:\n{}",
                    READY_TIMEOUT.as_secs(),
                    log_tail(log_path)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A Secrets Manager client for this instance (static credentials, us-east-1).
    pub fn secretsmanager_client(&self) -> aws_sdk_secretsmanager::Client {
        use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "static"))
            .endpoint_url(&self.endpoint)
            .http_client(shared::aws::AwsHttpClient::shared())
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }
}

impl Drop for Ministack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
