//! The `sealpack` binary: parse the command line, run one command, map the error to an exit code (SPEC §3).
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
