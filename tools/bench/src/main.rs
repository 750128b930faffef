//! `bench`: see the library. Tables on stdout, progress on stderr.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let options = bench::Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.worker_threads.max(1))
        .enable_all()
        .build()?;
    let report = runtime.block_on(bench::run(&options))?;
    print!("{}", report.markdown());
    Ok(())
}
