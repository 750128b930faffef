//! `local`: the whole API on this machine. `local serve` (the default) for `make dev`,
//! `local invoke <function> <event.json>` for one API Gateway event.

use anyhow::Context;
use clap::{Parser, Subcommand};
use local::serve::{ServeOptions, Stack};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "The Billing API on this machine")]
struct Cli {
    /// Where the local state lives (database file, dev key).
    #[arg(long, env = "LOCAL_DIR", default_value = ".local", global = true)]
    dir: PathBuf,
    /// The embedded DynamoDB engine's port.
    #[arg(long, env = "DYNAMODB_PORT", default_value_t = 8000, global = true)]
    dynamodb_port: u16,
    /// The Stripe emulator's port.
    #[arg(long, env = "STRIPE_PORT", default_value_t = 12111, global = true)]
    stripe_port: u16,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every function on one port, with the embedded DynamoDB engine.
    Serve {
        #[arg(long, env = "PORT", default_value_t = 3000)]
        port: u16,
    },
    /// Run one API Gateway event through a function and print the response.
    Invoke {
        /// billing or credits
        function: String,
        /// An API Gateway HTTP API (payload 2.0) event, e.g. events/billing-tiers.json
        event: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let cli = Cli::parse();
    let local = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match cli.command.unwrap_or(Command::Serve { port: 3000 }) {
        Command::Serve { port } => {
            let options = ServeOptions::local(cli.dir, port, cli.dynamodb_port, cli.stripe_port);
            let stack = Stack::start(&options).await?;
            println!("Billing API, local stack (test mode)");
            println!("  API       {}", stack.api_url);
            println!(
                "  Stripe    {}  (emulator; webhooks go to {}{})",
                stack.stripe.base_url(),
                stack.api_url,
                local::serve::WEBHOOK_PATH
            );
            println!(
                "  DynamoDB  {}  (state in {})",
                stack.dynamodb_endpoint,
                options.dir.join(local::serve::DB_FILE).display()
            );
            println!(
                "  API key   {}  (also in {})",
                stack.api_key.expose(),
                options.dir.join(local::devkey::KEY_FILE).display()
            );
            println!(
                "Try:  curl -H \"Authorization: Bearer $(cat {})\" {}/v1/billing/tiers",
                options.dir.join(local::devkey::KEY_FILE).display(),
                stack.api_url
            );
            println!("Ctrl-C stops; the data stays until `make dev-reset`.");
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            eprintln!("stopping…");
            stack.stop().await
        }
        Command::Invoke { function, event } => {
            let text = std::fs::read_to_string(&event)
                .with_context(|| format!("reading {}", event.display()))?;
            let response =
                local::invoke::run(&function, &text, &cli.dir, local(cli.dynamodb_port)).await?;
            println!("{}", serde_json::to_string_pretty(&response)?);
            Ok(())
        }
    }
}
