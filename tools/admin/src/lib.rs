//! The operator's CLI: issue, list and revoke API keys, against the DynamoDB the environment
//! names (AWS by default; `--local` for the local stack's engine on :8000).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shared::clock::{Clock, SystemClock, rfc3339};
use shared::config::{Config, Stage};
use shared::keys::{self, AccountId};
use shared::store::Store;
use std::io::Write;

#[derive(Parser, Debug)]
#[command(name = "admin", about = "Billing API operator tools")]
pub struct Cli {
    /// Use the local stack's DynamoDB engine (http://127.0.0.1:8000).
    #[arg(long, global = true, conflicts_with = "endpoint_url")]
    pub local: bool,
    /// A DynamoDB endpoint other than AWS's (the SDK's AWS_ENDPOINT_URL_DYNAMODB works too).
    #[arg(long, global = true, env = "DYNAMODB_ENDPOINT")]
    pub endpoint_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Issue a key; the key alone goes to stdout, shown this once.
    CreateKey {
        #[arg(long)]
        account: String,
        #[arg(long, value_enum, default_value_t = ModeArg::Test)]
        mode: ModeArg,
    },
    /// Revoke one key of an account, named by its listed prefix or the whole key.
    RevokeKey {
        #[arg(long)]
        account: String,
        /// e.g. hi_test_AbCd1234, as `list-keys` shows it
        key: String,
    },
    /// List an account's keys: prefixes and dates only.
    ListKeys {
        #[arg(long)]
        account: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ModeArg {
    Test,
    Live,
}

impl From<ModeArg> for Stage {
    fn from(m: ModeArg) -> Stage {
        match m {
            ModeArg::Test => Stage::Test,
            ModeArg::Live => Stage::Live,
        }
    }
}

pub const LOCAL_ENDPOINT: &str = "http://127.0.0.1:8000";

async fn dynamodb(cli: &Cli) -> aws_sdk_dynamodb::Client {
    let endpoint = if cli.local {
        Some(LOCAL_ENDPOINT.to_string())
    } else {
        cli.endpoint_url.clone()
    };
    match endpoint {
        Some(endpoint) => shared::store::local_client(&endpoint),
        None => aws_sdk_dynamodb::Client::new(
            &aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
        ),
    }
}

/// Runs a command: results to `out`, words for the operator to `err`.
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let store = Store::new(dynamodb(&cli).await, config.tables.clone());
    let clock = SystemClock;
    match cli.command {
        Command::CreateKey { account, mode } => {
            let account = AccountId::parse(&account).map_err(anyhow::Error::msg)?;
            let (key, record) = keys::issue(&store, &clock, &account, mode.into())
                .await
                .context("storing the key")?;
            writeln!(out, "{}", key.expose())?;
            writeln!(
                err,
                "Issued a {}-mode key {} for account {account}. It is shown only now: store it safely.",
                record.mode.as_str(),
                record.key_prefix
            )?;
        }
        Command::RevokeKey { account, key } => {
            let account = AccountId::parse(&account).map_err(anyhow::Error::msg)?;
            let revoked = keys::revoke(&store, &clock, &account, &key).await?;
            writeln!(
                err,
                "Revoked {} of account {account}; warm instances may accept it for up to {} s more.",
                revoked.key_prefix,
                shared::auth::CACHE_TTL.as_secs()
            )?;
        }
        Command::ListKeys { account } => {
            let account = AccountId::parse(&account).map_err(anyhow::Error::msg)?;
            let keys = store.api_keys_of(&account).await?;
            writeln!(out, "{:<18} {:<5} {:<21} REVOKED", "KEY", "MODE", "CREATED")?;
            for k in &keys {
                writeln!(
                    out,
                    "{:<18} {:<5} {:<21} {}",
                    format!("{}…", k.key_prefix),
                    k.mode.as_str(),
                    k.created_at,
                    k.revoked_at.as_deref().unwrap_or("-")
                )?;
            }
            writeln!(
                err,
                "{} key(s) of account {account} (as of {}).",
                keys.len(),
                rfc3339(clock.now())
            )?;
        }
    }
    Ok(())
}
