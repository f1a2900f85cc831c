//! The `seed` binary, built inside this test package.
//!
//! The tests here start the real binary. Cargo only rebuilds the `seed` package's own binary when
//! that package is tested, so `cargo test -p seed-tests` would otherwise run a stale one. Built
//! here, from the same library and `main`, Cargo rebuilds it before these tests and hands its path
//! to them as `CARGO_BIN_EXE_seed-under-test`.

fn main() -> std::process::ExitCode {
    seed::agent::init::run_if_init();
    seed::cli::main()
}
