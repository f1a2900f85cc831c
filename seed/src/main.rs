//! The `seed` binary; everything lives in the library so tests can run it in-process.

fn main() -> std::process::ExitCode {
    seed::agent::init::run_if_init();
    seed::cli::main()
}
