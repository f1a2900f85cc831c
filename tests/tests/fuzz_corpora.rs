//! The fuzz targets' corpora (fuzz/corpus/<target>/), replayed on stable as CI's smoke run of
//! the fuzzers (docs/FUZZING.md): every file, then a bounded number of deterministic mutations
//! of each (bit flips, cuts, repeats, random bytes), through the same entry points the
//! cargo-fuzz targets call. A panic here is a fuzzing finding; its input is written next to the
//! corpus as `crash-<target>-<n>` to be minimized with `cargo +nightly fuzz tmin`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::time::{Duration, Instant};

/// Mutations per corpus file, and the time one target may take (the bound that matters on a
/// loaded CI machine).
const MUTATIONS: usize = 300;
const PER_TARGET: Duration = Duration::from_secs(8);

type Target = fn(&[u8]);

fn targets() -> [(&'static str, Target); 8] {
    [
        ("dhcp", seed::fuzzing::dhcp),
        ("tftp", seed::fuzzing::tftp),
        ("http", seed::fuzzing::http),
        ("apt", seed::fuzzing::apt),
        ("redfish", seed::fuzzing::redfish),
        ("config", seed::fuzzing::config),
        ("iso9660", images::iso9660::fuzz),
        ("qcow2", images::qcow2::fuzz),
    ]
}

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.truncate(i);
            }
            2 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            3 if !out.is_empty() && out.len() < 1 << 20 => {
                let (a, b) = (rng.below(out.len()), rng.below(out.len()));
                let (a, b) = (a.min(b), a.max(b));
                let piece = out[a..b].to_vec();
                out.splice(b..b, piece);
            }
            _ => {
                let i = rng.below(out.len() + 1);
                out.insert(i, [0, 0xff, b'\n', b'-', b'"'][rng.below(5)]);
            }
        }
    }
    out
}

#[test]
fn every_fuzz_corpus_and_its_mutations_pass_through_their_target() {
    let corpus = common::repo_root().join("fuzz/corpus");
    for (name, target) in targets() {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{name}: empty corpus");
        let started = Instant::now();
        let mut rng = Rng(0x5eed_0000 + name.len() as u64);
        let mut runs = 0;
        for file in &files {
            let input = std::fs::read(file).unwrap();
            run(name, target, &input, runs);
            runs += 1;
            for _ in 0..MUTATIONS {
                if started.elapsed() > PER_TARGET {
                    break;
                }
                let mutated = mutate(&mut rng, &input);
                run(name, target, &mutated, runs);
                runs += 1;
            }
        }
        eprintln!("{name}: {runs} inputs in {:?}", started.elapsed());
    }
}

/// Run `target` on `input`; on a panic keep the input for `cargo fuzz tmin` and fail.
fn run(name: &str, target: Target, input: &[u8], n: usize) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        let keep = std::env::temp_dir().join(format!("crash-{name}-{n}"));
        std::fs::write(&keep, input).unwrap();
        panic!(
            "fuzz target {name} panicked on input {n}, kept in {}",
            keep.display()
        );
    }
}
