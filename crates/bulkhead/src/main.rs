//! `bulkhead`, the one binary users run. Thin glue: parse the command line, call the
//! library crates, print for a person (tables) or a script (`-o json|yaml`), and exit
//! with a code that means something (see [`cli::EXIT_CODES`]).

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod context;
mod network;
mod output;
mod phases;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::context::Failure;

fn main() -> ExitCode {
    // A tenant's namespace holder is this binary re-executed: it must take over before
    // anything else runs (in particular before any thread starts).
    if bulkhead_node::sandbox::is_holder_invocation() {
        bulkhead_node::sandbox::holder_main();
    }
    // `bulkhead verify` runs this same binary inside each tenant as its probe.
    if bulkhead_verify::probe::is_probe_invocation() {
        bulkhead_verify::probe::probe_main();
    }
    // The instance's DNS resolver is this binary too, started by `apply`.
    if bulkhead_node::net::dns::is_resolver_invocation() {
        bulkhead_node::net::dns::resolver_main();
    }
    phases::start_from_env();
    let cli = Cli::parse();
    phases::mark("parse-args");
    let outcome = commands::run(cli);
    phases::report();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Invalid(diagnostics)) => {
            for diagnostic in diagnostics.iter() {
                eprintln!("error: {diagnostic}");
            }
            let count = diagnostics.len();
            eprintln!(
                "{count} error{} found; nothing was changed",
                if count == 1 { "" } else { "s" }
            );
            ExitCode::from(context::EXIT_INVALID)
        }
        Err(Failure::Other(error)) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(context::EXIT_FAILED)
        }
    }
}
