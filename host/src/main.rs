//! The `sluice` binary: parses the command line and hands off to `cli`.

mod cli;

// Arrow, parquet and the Delta log allocate and free many short-lived
// buffers per batch; glibc's malloc spent a third of the CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::sources::eventhubs::install_tls_provider();
    cli::main()
}
