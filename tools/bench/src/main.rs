//! `bench`: see the library. Tables on stdout, progress on stderr.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = bench::Options::parse();
    let report = bench::run(&options).await?;
    print!("{}", report.markdown());
    Ok(())
}
