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

/// The error and its causes, joined by ": ", leaving out a cause whose text the error
/// before it already ends with (our typed errors print their source themselves).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        last = text;
    }
    out
}

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
            let message = describe(&e);
            tracing::error!(error = message, "switchyard stopped with an error");
            eprintln!("switchyard: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Like a `thiserror` variant `#[error("store: {0}")]` with `#[source]`.
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "store: {}", self.0)
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_not_repeated() {
        let e = anyhow::Error::new(Outer(std::io::Error::other("disk full"))).context("opening");
        assert_eq!(super::describe(&e), "opening: store: disk full");
        let plain = anyhow::anyhow!("a").context("b");
        assert_eq!(super::describe(&plain), "b: a");
    }
}
