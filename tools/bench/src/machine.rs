//! What the numbers were measured on.

use serde::Serialize;
use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    pub arch: &'static str,
    pub kernel: Option<String>,
    /// 1, 5 and 15 minute load averages when the bench started (the machine may be shared).
    pub load_average: Option<String>,
    pub rustc: Option<String>,
    /// Entries of /etc/ssl/certs, where the OS trust store the AWS SDK loads lives here.
    pub ssl_certs_entries: Option<usize>,
    /// RFC 3339, UTC.
    pub date: String,
    pub git_commit: Option<String>,
    /// Uncommitted changes in the worktree when measured.
    pub git_dirty: Option<bool>,
}

impl Machine {
    pub fn probe(root: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map(|(_, model)| model.trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let git = |args: &[&str]| output(Command::new("git").arg("-C").arg(root).args(args));
        Self {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            arch: std::env::consts::ARCH,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            load_average: read_trimmed("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
            rustc: output(Command::new("rustc").arg("--version")),
            ssl_certs_entries: std::fs::read_dir("/etc/ssl/certs").ok().map(|d| d.count()),
            date: shared::clock::rfc3339(time::OffsetDateTime::now_utc()),
            git_commit: git(&["rev-parse", "HEAD"]),
            git_dirty: git(&["status", "--porcelain"]).map(|s| !s.is_empty()),
        }
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// A command's trimmed stdout, when it runs and succeeds.
fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
