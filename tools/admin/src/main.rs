use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = admin::Cli::parse();
    admin::run(cli, &mut std::io::stdout(), &mut std::io::stderr()).await
}
