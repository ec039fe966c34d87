//! `switchyard`: one binary for every role. A thin shell over the library crates: parse the
//! command line, load the configuration, set up logging, run the role until a signal.

mod bench;
mod cli;
mod keys;
mod logging;
mod roles;
mod signals;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the request and job paths allocate a lot of small, short-lived values, and the
/// system allocator showed up as a third of the CPU time in the API benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchyard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(roles::run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "switchyard stopped with an error");
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
