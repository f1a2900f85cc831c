//! The store loses no committed row when seed is killed with SIGKILL mid-burst.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use seed::store::Store;

#[test]
fn sigkill_during_a_burst_of_writes_loses_no_committed_row() {
    let state = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_write-burst"))
            .arg(state.path())
            .arg("100000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start seed");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut promised = Vec::new();
        // Kill somewhere in the middle of the burst; a different point each round.
        let kill_after = 200 + round * 300;
        let deadline = Instant::now() + Duration::from_secs(120);
        while promised.len() < kill_after {
            assert!(Instant::now() < deadline, "seed wrote too slowly");
            let line = lines
                .next()
                .expect("seed ended before it was killed")
                .unwrap();
            promised.push(line.trim().parse::<i64>().unwrap());
        }
        // SIGKILL: no destructor, no checkpoint, no flush runs.
        child.kill().unwrap();
        child.wait().unwrap();
        // Ids printed between our last read and the kill are promises too.
        promised.extend(
            lines
                .map_while(Result::ok)
                .filter_map(|l| l.trim().parse::<i64>().ok()),
        );

        let store = Store::open(state.path()).expect("reopen after SIGKILL");
        let missing: Vec<i64> = promised
            .iter()
            .copied()
            .filter(|id| !store.has_event(*id).unwrap())
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} committed events lost, e.g. {:?}",
            missing.len(),
            promised.len(),
            &missing[..missing.len().min(5)]
        );
    }
}
