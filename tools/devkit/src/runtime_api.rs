//! The Lambda Runtime API a deployed function's bootstrap polls for its events, served by
//! `cargo lambda watch --only-lambda-apis` (installed into `.venv-sam/` by `make`): a
//! bootstrap exec'd against it starts as it would in AWS. `make bench` times cold starts
//! against it; tests run a function's real start through it.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Where `make` installs cargo-lambda, under the workspace root.
pub fn cargo_lambda(root: &Path) -> PathBuf {
    root.join(".venv-sam/bin/cargo-lambda")
}

/// The workspace root (this crate is two levels below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `cargo lambda watch --only-lambda-apis` on a port of its own.
pub struct RuntimeApi {
    child: tokio::process::Child,
    port: u16,
}

impl RuntimeApi {
    /// Starts it from `root` (the workspace) and waits until it listens; its output goes to
    /// `log`.
    pub async fn start(cargo_lambda: &Path, root: &Path, log: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(log)?;
        let child = tokio::process::Command::new(cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (make installs it into .venv-sam/)",
                    cargo_lambda.display()
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("cargo lambda watch did not listen on port {port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, port })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for a bootstrap.
    pub fn runtime_api(&self) -> String {
        format!("http://127.0.0.1:{}/.rt", self.port)
    }

    /// Where an invoke is queued (Lambda's Invoke API); it answers with the function's
    /// response once a bootstrap has served it.
    pub fn invoke_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.port
        )
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The environment the Lambda service and template.yaml give the function `name`, pointed at
/// `runtime_api`, the DynamoDB engine at `dynamodb` and Stripe at `stripe_api_base`, with the
/// local Stripe keys: nothing of this machine's environment.
pub fn environment(
    name: &str,
    runtime_api: &str,
    dynamodb: &str,
    stripe_api_base: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_SESSION_TOKEN", "local"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb),
        ("STAGE", "test"),
        ("STRIPE_API_BASE", stripe_api_base),
        (
            shared::secrets::SECRET_KEY_ENV,
            shared::secrets::LOCAL_SECRET_KEY,
        ),
        (
            shared::secrets::WEBHOOK_SECRET_ENV,
            shared::secrets::LOCAL_WEBHOOK_SECRET,
        ),
        ("RUST_LOG", "info"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(
        shared::tables::TABLES
            .iter()
            .map(|t| (t.env_var.to_string(), t.default_name.to_string())),
    );
    env
}
