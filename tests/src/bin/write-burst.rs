//! A test aid, not part of seed: writes events into a seed store, one transaction each,
//! printing every id once it is committed. `tests/store_crash.rs` kills it part-way and checks
//! that every printed id survived.
//!
//! Usage: `write-burst STATE_DIR COUNT` (COUNT at most 1,000,000, so a runaway test cannot
//! fill the disk).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(Ok(count))) = (args.first(), args.get(1).map(|c| c.parse::<u32>())) else {
        eprintln!("usage: write-burst STATE_DIR COUNT");
        return ExitCode::from(2);
    };
    let mut store = match seed::store::Store::open(std::path::Path::new(dir)) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("write-burst: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for i in 0..count.min(1_000_000) {
        match store.record_event(None, "burst", "test", &i.to_string()) {
            // Printed only after the commit returned: a printed id is a promise.
            Ok(id) => {
                if writeln!(out, "{id}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("write-burst: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
