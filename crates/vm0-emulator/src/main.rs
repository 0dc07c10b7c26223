//! `vm0-emulator`: the local VM0 API emulator. All the logic is in this package's library (`vm0_emulator::run`);
//! this only parses the command line, sets up logging to stderr (`RUST_LOG`, default `info`), and reports a fatal
//! error.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = vm0_emulator::Args::parse();
    if let Err(e) = vm0_emulator::run(args) {
        eprintln!("vm0-emulator: {e}");
        std::process::exit(1);
    }
}
