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
    for (at, len) in [
        (0usize, 1 << 20),
        (5 << 20, 3 << 19),
        ((12 << 20) - 4096, 4096),
    ] {
        for (i, b) in bytes[at..at + len].iter_mut().enumerate() {
            *b = ((i.wrapping_mul(2_654_435_761)) >> 11) as u8 | 1;
        }
    }
    bytes
}

use common::sha256_hex as sha256;
use common::signatures::{blkid_at, old_system};

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
    // The API and seed status list it, and what it takes on disk.
    let api = common::http::get(&seed_http.url("/api/v1/images")).json();
    assert_eq!(api["disk_images"][0]["name"], "node", "{api}");
    assert_eq!(api["disk_images"][0]["sha256"], sha256(&bytes), "{api}");
    assert!(
        api["disk"]["disk_images_bytes"].as_u64().unwrap() > 0,
        "{api}"
    );
    let out = seed()
        .arg("--state-dir")
        .arg(&state)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["disk"]["disk_images_bytes"].as_u64().unwrap() > 0,
        "{status}"
    );
    let target = old_disk(dir.path());

    let out = agent_write(&url, &sha256(&bytes), bytes.len(), &target);
    assert!(out.status.success(), "{}", describe(&out));
    let written = std::fs::read(&target).unwrap();
    assert!(
        written[..bytes.len()] == bytes[..],
        "the image differs on the target"
    );
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
    let url = format!(
        "http://{}/disks/node/disk.raw",
        listener.local_addr().unwrap()
    );
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

/// A sparse file of `size` bytes in `dir`: a disk for the wipe.
fn sparse_disk(dir: &Path, size: u64) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(size).unwrap();
    disk
}

/// `seed agent wipe` of `disk` with `extra` arguments; it must succeed.
fn agent_wipe(disk: &Path, extra: &[&str]) -> Output {
    let out = seed()
        .args(["agent", "wipe"])
        .args(extra)
        .arg("--target")
        .arg(disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    out
}

/// A disk that carried an old system: a GPT (sgdisk) with an md RAID-1 member, an LVM PV and
/// an ext4 filesystem (mkfs.ext4) in its partitions. libblkid sees them all before
/// `seed agent wipe`, nothing after (nor does wipefs), while the data between stays.
#[test]
fn a_disk_with_a_stale_gpt_md_member_lvm_pv_and_ext4_is_wiped_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sparse_disk(dir.path(), 512 << 20);
    let mib = 1u64 << 20;
    let [p1, p2, p3] = old_system(&disk, 0);
    // Data in the middle of the md member: an image writes over it; the wipe leaves it.
    use std::os::unix::fs::FileExt;
    {
        let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        file.write_all_at(&[0x5e; 4096], p1 + 32 * mib).unwrap();
    }
    let found = |at: u64| blkid_at(&disk, at);

    let out = agent_wipe(&disk, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 partition(s) found"),
        "{}",
        describe(&out)
    );
    for at in [0, p1, p2, p3] {
        assert_eq!(found(at), None, "something is still found at {at}");
    }
    let out = std::process::Command::new(common::need("wipefs"))
        .arg("--no-act")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "{}",
        describe(&out)
    );
    let mut middle = [0u8; 4096];
    std::fs::File::open(&disk)
        .unwrap()
        .read_exact_at(&mut middle, p1 + 32 * mib)
        .unwrap();
    assert!(middle == [0x5e; 4096], "data between the edges was touched");
}

/// A written image is smaller than its disk: `seed agent configdrive` adds the NoCloud volume
/// at the disk's end. For a GPT image (sgdisk), `sgdisk -v` then finds no problem (backup
/// table moved to the disk's end, CRCs right); for an MBR image (sfdisk), sfdisk lists the new
/// partition. libblkid sees an iso9660 volume labelled cidata there and xorriso extracts the
/// three documents unchanged.
#[test]
fn a_config_drive_lands_at_the_end_of_the_disk_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let documents = [
        ("user-data", "#cloud-config\nhostname: cmp1\n".to_string()),
        ("meta-data", "instance-id: cmp1-1\nlocal-hostname: cmp1\n".to_string()),
        (
            "network-config",
            "network:\n  version: 2\n  ethernets:\n    eno1:\n      match: {macaddress: \"52:54:00:10:00:11\"}\n      addresses: [10.10.10.11/24]\n"
                .to_string(),
        ),
    ];
    for (name, text) in &documents {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let tool = |program: &str, args: &[&str], input: Option<&str>| -> String {
        let mut child = std::process::Command::new(common::need(program))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            describe(&out)
        );
        // Both streams: sgdisk says "No problems found" on stdout even when its cautions
        // about a corrupt table went to stderr.
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for table in ["gpt", "mbr"] {
        // The image: 24 MiB, one partition; the disk: 64 MiB with the image at its start.
        let image = dir.path().join(format!("{table}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(24 << 20)
            .unwrap();
        let image_arg = image.to_str().unwrap();
        match table {
            "gpt" => {
                tool(
                    "sgdisk",
                    &["-n", "1:2048:+16M", "-t", "1:8300", image_arg],
                    None,
                );
            }
            _ => {
                tool(
                    "sfdisk",
                    &["-q", image_arg],
                    Some("label: dos\nstart=2048, size=32768, type=83\n"),
                );
            }
        }
        let disk = dir.path().join(format!("{table}-disk.img"));
        std::fs::copy(&image, &disk).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let disk_arg = disk.to_str().unwrap();
        let out = seed()
            .args(["agent", "configdrive", "--target", disk_arg])
            .arg("--user-data")
            .arg(dir.path().join("user-data"))
            .arg("--meta-data")
            .arg(dir.path().join("meta-data"))
            .arg("--network-config")
            .arg(dir.path().join("network-config"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{table}: {}", describe(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("partition 2 of"), "{table}: {said}");
        let start_mib: u64 = said
            .trim()
            .rsplit(" at ")
            .next()
            .and_then(|s| s.strip_suffix(" MiB"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            start_mib >= 60,
            "{table}: the config drive starts at {start_mib} MiB, not at the disk's end"
        );
        if table == "gpt" {
            let verified = tool("sgdisk", &["-v", disk_arg], None);
            assert!(
                verified.contains("No problems found")
                    && !verified.contains("Caution")
                    && !verified.contains("Warning"),
                "{verified}"
            );
            let listed = tool("sgdisk", &["-p", disk_arg], None);
            assert!(listed.contains("config-drive"), "{listed}");
        } else {
            let listed = tool("sfdisk", &["-d", disk_arg], None);
            assert!(
                listed
                    .replace(' ', "")
                    .contains(&format!("start={},", start_mib << 11)),
                "{listed}"
            );
        }
        let start = start_mib << 20;
        let probe = tool(
            "blkid",
            &["-p", "-o", "export", "-O", &start.to_string(), disk_arg],
            None,
        );
        assert!(
            probe.contains("TYPE=iso9660") && probe.contains("LABEL=cidata"),
            "{table}: {probe}"
        );
        // The volume alone, as the partition holds it, read by xorriso with its Rock Ridge names.
        let bytes = std::fs::read(&disk).unwrap();
        let volume = dir.path().join(format!("{table}-cidata.iso"));
        std::fs::write(
            &volume,
            &bytes[start as usize..(start as usize + (2 << 20)).min(bytes.len())],
        )
        .unwrap();
        let out_dir = dir.path().join(format!("{table}-extracted"));
        tool(
            "xorriso",
            &[
                "-osirrox",
                "on",
                "-indev",
                volume.to_str().unwrap(),
                "-extract",
                "/",
                out_dir.to_str().unwrap(),
            ],
            None,
        );
        for (name, text) in &documents {
            assert_eq!(
                std::fs::read_to_string(out_dir.join(name)).unwrap(),
                *text,
                "{table}: {name}"
            );
        }
    }
}

/// An MBR disk with logical partitions (sfdisk: a primary, an extended partition holding two
/// logical ones): each logical partition carries an LVM PV label (the common leftover of an old
/// install). The wipe follows the EBR chain: both labels and every EBR are gone.
#[test]
fn logical_partitions_of_an_mbr_extended_partition_are_wiped_too() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sparse_disk(dir.path(), 256 << 20);
    let mut sfdisk = std::process::Command::new(common::need("sfdisk"))
        .arg("--quiet")
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: dos\n,32MiB,L\n,,E\n,64MiB,L\n,64MiB,8e\n")
            .unwrap();
    }
    let out = sfdisk.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // Where sfdisk put them, as it reports them (`sfdisk --json`), in 512-byte sectors.
    let out = std::process::Command::new(common::need("sfdisk"))
        .arg("--json")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let table: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{table}");
    let logical: Vec<u64> = parts[2..]
        .iter()
        .map(|p| p["start"].as_u64().unwrap() * 512)
        .collect();
    use std::os::unix::fs::FileExt;
    {
        let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        for &start in &logical {
            file.write_all_at(&common::signatures::lvm_label(), start + 512)
                .unwrap();
        }
    }
    for &start in &logical {
        assert_eq!(
            common::signatures::blkid_at(&disk, start).as_deref(),
            Some("LVM2_member"),
            "the label is seen before the wipe"
        );
    }
    let out = agent_wipe(&disk, &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("4 partition(s) found"), "{said}");
    for &start in &logical {
        assert_eq!(
            common::signatures::blkid_at(&disk, start),
            None,
            "at {start}"
        );
        // Its EBR sits in the gap before it (sfdisk leaves 1 MiB): zeroed too.
        let mut ebr = [0u8; 512];
        std::fs::File::open(&disk)
            .unwrap()
            .read_exact_at(&mut ebr, start - (1 << 20))
            .unwrap();
        assert!(ebr.iter().all(|&b| b == 0), "an EBR is left before {start}");
    }
}

/// `seed agent wipe --discard`: after the metadata wipe, every block is discarded: data the
/// wipe leaves between the edges reads as zeros and the file holds no data any more (a hole
/// where a disk would have deallocated).
#[test]
fn discard_deallocates_the_whole_disk() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let disk = sparse_disk(dir.path(), 64 << 20);
    let file = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    file.write_all_at(&[0x5e; 1 << 20], 32 << 20).unwrap();
    file.sync_all().unwrap();
    let out = agent_wipe(&disk, &["--discard"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("discarded: "),
        "{}",
        describe(&out)
    );
    let file = std::fs::File::open(&disk).unwrap();
    let mut middle = vec![0u8; 1 << 20];
    file.read_exact_at(&mut middle, 32 << 20).unwrap();
    assert!(
        middle.iter().all(|&b| b == 0),
        "data left between the edges"
    );
    assert_eq!(file.metadata().unwrap().len(), 64 << 20, "the size is kept");
    // No data anywhere: SEEK_DATA from the start finds none (ENXIO).
    let data = nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekData);
    assert_eq!(data, Err(nix::errno::Errno::ENXIO), "data left in the file");
}
