//! The `sluice` binary: parses the command line and hands off to `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    sluice::sources::eventhubs::install_tls_provider();
    cli::main()
}
