//! `seed agent write` against `seed serve` on loopback and against a fault-injecting server:
//! a registered disk image lands on the target byte for byte (zeros over old data too), a
//! transfer that breaks off resumes with `Range` and `If-Range`, and an image whose bytes are
//! not the registered ones is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::http::HttpSeed;
use common::{describe, repo_root, seed};

/// The disk image: 12 MiB with data at the start, in the middle and at the end, zeros
/// between (which must overwrite what the target held).
fn image() -> Vec<u8> {
    let mut bytes = vec![0u8; 12 << 20];
    for (at, len) in [(0usize, 1 << 20), (5 << 20, 3 << 19), ((12 << 20) - 4096, 4096)] {
        for (i, b) in bytes[at..at + len].iter_mut().enumerate() {
            *b = ((i.wrapping_mul(2_654_435_761)) >> 11) as u8 | 1;
        }
    }
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn agent_write(url: &str, sha: &str, size: usize, target: &Path) -> Output {
    seed()
        .args(["agent", "write", "--url", url, "--sha256", sha, "--size"])
        .arg(size.to_string())
        .arg("--target")
        .arg(target)
        .output()
        .unwrap()
}

/// A target that held something else: 16 MiB of 0xAA.
fn old_disk(dir: &Path) -> PathBuf {
    let target = dir.join("disk");
    std::fs::write(&target, vec![0xaa; 16 << 20]).unwrap();
    target
}

#[test]
fn the_agent_writes_a_registered_disk_image_from_seed_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let bytes = image();
    let source = dir.path().join("node.img");
    std::fs::write(&source, &bytes).unwrap();
    let out = seed()
        .arg("--state-dir")
        .arg(&state)
        .args(["images", "add-disk", "node", "--file"])
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let config = dir.path().join("seed.yaml");
    std::fs::copy(repo_root().join("examples/lab.yaml"), &config).unwrap();
    let seed_http = HttpSeed::start(&config, &state);
    let url = seed_http.url("/disks/node/disk.raw");
    let target = old_disk(dir.path());

    let out = agent_write(&url, &sha256(&bytes), bytes.len(), &target);
    assert!(out.status.success(), "{}", describe(&out));
    let written = std::fs::read(&target).unwrap();
    assert!(written[..bytes.len()] == bytes[..], "the image differs on the target");
    assert!(
        written[bytes.len()..].iter().all(|&b| b == 0xaa),
        "beyond the image the target is untouched"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 transfer(s)"),
        "{}",
        describe(&out)
    );

    // A wrong checksum, a size that is not the image's, an image seed does not have.
    let out = agent_write(&url, &"0".repeat(64), bytes.len(), &target);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the registered"),
        "{}",
        describe(&out)
    );
    let out = agent_write(&url, &sha256(&bytes), bytes.len() + 1, &target);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the registered image has"),
        "{}",
        describe(&out)
    );
    let out = agent_write(
        &seed_http.url("/disks/nothing/disk.raw"),
        &sha256(&bytes),
        bytes.len(),
        &target,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        describe(&out)
    );
}

/// What the fault-injecting server does with the first response.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Sends a third of the body and closes the connection; ranges work after.
    BreakOff,
    /// Sends the whole body with one byte changed.
    FlipByte,
}

/// Serves `bytes` on 127.0.0.1 for at most four connections, one at a time, recording each
/// request's `Range` and `If-Range`; the first response suffers `fault`.
fn faulty_server(bytes: Vec<u8>, fault: Fault) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/disks/node/disk.raw", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(4).enumerate() {
            let Ok(mut stream) = stream else { return };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut range, mut if_range) = (None, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
                if lower.starts_with("if-range:") {
                    if_range = Some(line[9..].trim().to_string());
                }
            }
            log.lock().unwrap().push(format!(
                "range={} if-range={}",
                range.map_or("-".into(), |r| r.to_string()),
                if_range.unwrap_or_else(|| "-".into())
            ));
            let etag = "\"image-1\"";
            let mut body = bytes.clone();
            let from = range.unwrap_or(0);
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                    body.len() - from,
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            let mut end = body.len();
            if n == 0 {
                match fault {
                    Fault::BreakOff => end = body.len() / 3,
                    Fault::FlipByte => body[7 << 20] ^= 0x40,
                }
            }
            let _ = stream.write_all(&body[from..end]);
            // Dropping the stream closes it: mid-body for the broken transfer.
        }
    });
    (url, seen)
}

#[test]
fn a_transfer_that_breaks_off_resumes_with_a_range_and_damaged_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image();
    let sha = sha256(&bytes);

    let (url, seen) = faulty_server(bytes.clone(), Fault::BreakOff);
    let target = old_disk(dir.path());
    let out = agent_write(&url, &sha, bytes.len(), &target);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&target).unwrap()[..bytes.len()] == bytes[..],
        "the resumed image differs"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "range=- if-range=-".to_string(),
            format!("range={} if-range=\"image-1\"", bytes.len() / 3),
        ]
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 transfer(s)"),
        "{}",
        describe(&out)
    );

    let (url, _) = faulty_server(bytes.clone(), Fault::FlipByte);
    let out = agent_write(&url, &sha, bytes.len(), &target);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("not the registered {sha}")),
        "{}",
        describe(&out)
    );
}
