//! The operator's CLI: issue, list and revoke API keys, and reconcile our copy with Stripe,
//! against the DynamoDB the environment names (AWS by default; `--local` for the local
//! stack's engine on :8000 and its Stripe emulator on :12111).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use shared::catalog::Sellable;
use shared::clock::{Clock, SystemClock, rfc3339};
use shared::config::{Config, Stage};
use shared::keys::{self, AccountId};
use shared::reconcile::{Options, Progress, Report};
use shared::secrets::StripeKeys;
use shared::store::Store;
use shared::stripe::StripeApi;
use shared::stripe::prices::SyncReport;
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
    /// Heal our copy from Stripe: walk Stripe's events since `--since` (paid sessions never
    /// granted, purchases still pending after their Checkout ended) and every subject with a
    /// Stripe customer (plans that differ from Stripe's); print the drift table. Stripe's key
    /// comes as for the functions: `STRIPE_SECRET_ID` (Secrets Manager) or
    /// `STRIPE_SECRET_KEY`, with `STAGE` and `STRIPE_API_BASE`.
    Reconcile {
        /// How far back to walk Stripe's events: `30d`, `72h`, `90m` (Stripe keeps 30 days).
        #[arg(long, default_value = "30d", value_parser = parse_since)]
        since: i64,
        /// Report the drift; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make the Stripe account sell the catalog: a product per item, a price per lookup key
    /// (a changed amount is a new price that takes the key over, `transfer_lookup_key`), and
    /// the Customer Portal's configuration (cancel at period end, switch between the plans).
    /// Idempotent: a second run changes nothing. Stripe's key as for `reconcile`.
    StripeSync {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A look-back like `30d`, `72h` or `90m`, in seconds: 1 minute to 30 days.
pub fn parse_since(raw: &str) -> Result<i64, String> {
    let unit = [("d", 86_400), ("h", 3_600), ("m", 60)]
        .into_iter()
        .find_map(|(suffix, scale)| raw.strip_suffix(suffix).map(|n| (n, scale)));
    let Some((number, scale)) = unit else {
        return Err(format!("`{raw}`: a number and d, h or m (30d, 72h, 90m)"));
    };
    number
        .parse::<i64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| (60..=30 * 86_400).contains(s))
        .ok_or_else(|| format!("`{raw}`: from 1m to 30d"))
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
/// The local stack's Stripe emulator (`make dev`).
pub const LOCAL_STRIPE_API_BASE: &str = "http://127.0.0.1:12111";

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
            let (key, record) = keys::issue(&store, &clock, &account, mode.into(), None)
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
        Command::StripeSync { dry_run } => {
            let (config, keys) = stripe_keys(&cli, config).await?;
            let api = StripeApi::new(&config.stripe_api_base, &keys.secret_key)?;
            stripe_sync(&api, &shared::catalog::sellables(), dry_run, out, err).await?;
        }
        Command::Reconcile { since, dry_run } => {
            let (config, keys) = stripe_keys(&cli, config).await?;
            let dynamodb = store.client().clone();
            let state = shared::AppState::new(
                config,
                dynamodb,
                keys,
                std::sync::Arc::new(SystemClock),
                shared::state::StripeUse::Calls,
            )
            .await?;
            let options = Options {
                since: clock.now().unix_timestamp() - since,
                dry_run,
            };
            let report = reconcile(&state, options).await?;
            write!(out, "{}", report.table())?;
            if dry_run && !report.drifts.is_empty() {
                writeln!(err, "Dry run: nothing was changed.")?;
            }
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

/// The Stripe API base (the local emulator with `--local`) and Stripe's key as the functions
/// read it: the Secrets Manager secret (with the operator's AWS credentials, profiles and SSO
/// included), else the environment.
async fn stripe_keys(cli: &Cli, mut config: Config) -> anyhow::Result<(Config, StripeKeys)> {
    if cli.local && std::env::var_os("STRIPE_API_BASE").is_none() {
        config.stripe_api_base = LOCAL_STRIPE_API_BASE.into();
    }
    let keys = match &config.stripe_secret_id {
        Some(secret_id) => {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            shared::secrets::load_from(&client, secret_id, config.stage).await?
        }
        None => shared::secrets::from_env(config.stage)?,
    };
    Ok((config, keys))
}

/// `admin stripe-sync`: syncs `catalog` into the account `api` reaches and prints each change
/// (or that there is none) to `out`, then every lookup key's price id.
pub async fn stripe_sync(
    api: &StripeApi,
    catalog: &[Sellable],
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<SyncReport> {
    let report = shared::stripe::prices::sync(api, catalog, dry_run)
        .await
        .context("syncing the catalog with Stripe")?;
    if report.changes.is_empty() {
        writeln!(out, "No change: Stripe sells the catalog as it is.")?;
    }
    let verb = if dry_run { "would" } else { "did" };
    for change in &report.changes {
        writeln!(out, "{verb} {change}")?;
    }
    writeln!(out, "{:<28} PRICE", "LOOKUP KEY")?;
    for (key, id) in &report.prices {
        writeln!(out, "{key:<28} {id}")?;
    }
    if dry_run && !report.changes.is_empty() {
        writeln!(err, "Dry run: nothing was changed.")?;
    }
    Ok(report)
}

/// Progress bars on stderr, one per walk (hidden when stderr is not a terminal).
struct Bars(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl Progress for Bars {
    fn phase(&self, name: &str) {
        let mut current = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = current.take() {
            bar.finish();
        }
        let bar = indicatif::ProgressBar::new_spinner().with_message(format!("{name}: "));
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}{pos} read") {
            bar.set_style(style);
        }
        *current = Some(bar);
    }

    fn step(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.inc(1);
        }
    }
}

async fn reconcile(state: &shared::AppState, options: Options) -> anyhow::Result<Report> {
    let bars = Bars(std::sync::Mutex::new(None));
    let report = shared::reconcile::run(state, options, &bars)
        .await
        .map_err(|e| anyhow::anyhow!("reconciling: {e:?}"))?;
    if let Some(bar) = bars.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
        bar.finish();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_backs_are_days_hours_or_minutes_up_to_thirty_days() {
        assert_eq!(parse_since("30d"), Ok(30 * 86_400));
        assert_eq!(parse_since("72h"), Ok(72 * 3_600));
        assert_eq!(parse_since("90m"), Ok(90 * 60));
        for bad in ["", "d", "31d", "0m", "5é", "1w", "-1h", "h1"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
