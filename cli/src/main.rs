//! `syncws`: WebSocket tools built on the syncws library.

use clap::{Parser, Subcommand};

/// WebSocket tools built on the syncws library.
#[derive(Parser)]
#[command(name = "syncws", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load generator of the benchmark: echo latency and throughput, broadcast, idle memory, connects/s.
    Bench(syncws_cli::loadgen::Args),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => std::process::exit(syncws_cli::loadgen::main(args)),
    }
}
