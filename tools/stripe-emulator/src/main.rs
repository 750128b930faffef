//! `stripe-emulator`: runs the emulator standalone.

use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(about = "A stateful local Stripe (test mode) for development and tests")]
struct Args {
    #[arg(long, env = "STRIPE_EMULATOR_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long, env = "STRIPE_EMULATOR_PORT", default_value_t = 12111)]
    port: u16,
    /// Receives every event, signed with --webhook-secret.
    #[arg(long, env = "STRIPE_WEBHOOK_URL")]
    webhook_url: Option<String>,
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", default_value = stripe_emulator::DEFAULT_WEBHOOK_SECRET)]
    webhook_secret: String,
    /// Seconds before the first webhook retry (doubling after).
    #[arg(long, default_value_t = 2.0)]
    retry_base_secs: f64,
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// The URL browsers reach the emulator at, if not http://<host>:<port>.
    #[arg(long, env = "STRIPE_EMULATOR_PUBLIC_URL")]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let options = stripe_emulator::EmulatorOptions {
        webhook_url: args.webhook_url.clone(),
        webhook_secret: args.webhook_secret,
        retry_base: Duration::from_secs_f64(args.retry_base_secs.max(0.0)),
        max_attempts: args.max_attempts,
        public_url: args.public_url,
        ..Default::default()
    };
    let handle = stripe_emulator::start(listener, options).await?;
    println!("Stripe emulator listening on {}", handle.base_url());
    if let Some(url) = &args.webhook_url {
        println!("Forwarding events to {url}");
    }
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}
