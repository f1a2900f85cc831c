//! The TFTP server against real clients (atftp, curl) and a scripted PXE ROM, in network
//! namespaces the tests create.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use common::describe;
use common::netns::{Netns, SEED_IP, serving, with_seed_settings};

const NODES: &str = "[{ name: n1, role: node, bmc: { address: 10.99.0.21, driver: manual }, macs: [\"02:00:00:00:00:21\"] }]";

fn firmware(name: &str) -> Vec<u8> {
    std::fs::read(common::repo_root().join("ipxe/firmware").join(name)).unwrap()
}

fn started() -> (Netns, tempfile::TempDir, common::netns::Seed) {
    let (ns, dir, _config, seed) = serving(|ns, dir| ns.config(dir, "10.99.10.0/24", "", NODES));
    ns.add_client_address("10.99.10.50/24");
    (ns, dir, seed)
}

/// `atftp` fetching `name` into `out` with blksize 1468 and windowsize 8.
fn atftp_get(ns: &Netns, name: &str, out: &std::path::Path) -> std::process::Output {
    common::need("atftp");
    ns.in_cli("timeout")
        .args([
            "60",
            "atftp",
            "--option",
            "blksize 1468",
            "--option",
            "windowsize 8",
            "-g",
            "-r",
            name,
            "-l",
        ])
        .arg(out)
        .arg(SEED_IP)
        .output()
        .unwrap()
}

#[test]
fn atftp_and_curl_fetch_byte_identical_binaries_with_large_blocks_and_windows() {
    let (ns, dir, seed) = started();
    for name in ["ipxe.efi", "undionly.kpxe", "snponly.efi"] {
        let out_path = dir.path().join(format!("atftp-{name}"));
        let out = atftp_get(&ns, name, &out_path);
        assert!(out.status.success(), "atftp {name}: {}", describe(&out));
        assert!(
            std::fs::read(&out_path).unwrap() == firmware(name),
            "atftp {name} differs"
        );

        let out_path = dir.path().join(format!("curl-{name}"));
        let out = ns
            .in_cli("curl")
            .args(["-sS", "--max-time", "60", "--tftp-blksize", "1468", "-o"])
            .arg(&out_path)
            .arg(format!("tftp://{SEED_IP}/{name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {name}: {}", describe(&out));
        assert!(
            std::fs::read(&out_path).unwrap() == firmware(name),
            "curl {name} differs"
        );
    }
    seed.stop();
}

/// A PXE ROM's pattern, from one client port: RRQ with tsize → OACK → ERROR → RRQ again, then
/// the whole file with ACK per block; and paths that must be refused.
const PXE_ROM: &str = r#"
import socket, struct, sys
server = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
def rrq(name, *opts):
    p = struct.pack("!H", 1) + name + b"\0octet\0"
    for o in opts:
        p += o + b"\0"
    s.sendto(p, (server, 69))
    return s.recvfrom(70000)
# 1. The tsize probe.
data, tid = rrq(b"ipxe.efi", b"tsize", b"0", b"blksize", b"1468", b"windowsize", b"4")
assert struct.unpack("!H", data[:2])[0] == 6, data[:40]
fields = data[2:].split(b"\0")
opts = dict(zip(fields[0::2], fields[1::2]))
print("tsize", int(opts[b"tsize"]))
s.sendto(struct.pack("!HH", 5, 0) + b"abort\0", tid)
# 2. The real download, from the same port.
data, tid = rrq(b"ipxe.efi", b"blksize", b"1468")
assert struct.unpack("!H", data[:2])[0] == 6, data[:40]
s.sendto(struct.pack("!HH", 4, 0), tid)
out, expect = b"", 1
while True:
    data, _ = s.recvfrom(70000)
    op, block = struct.unpack("!HH", data[:4])
    assert op == 3, (op, data[4:60])
    if block == expect:
        out += data[4:]
        expect = (expect + 1) % 65536
    s.sendto(struct.pack("!HH", 4, block), tid)
    if block == (expect - 1) % 65536 and len(data) - 4 < 1468:
        break
open(sys.argv[2], "wb").write(out)
# 3. A block larger than the zone's MTU (1500) carries is answered with 1468.
data, tid = rrq(b"ipxe.efi", b"blksize", b"9000")
fields = data[2:].split(b"\0")
print("blksize", dict(zip(fields[0::2], fields[1::2]))[b"blksize"].decode())
s.sendto(struct.pack("!HH", 5, 0) + b"enough\0", tid)
# 4. Refusals.
for name in [b"../etc/passwd", b"/etc/passwd", b"a/../../etc/passwd", b"missing.efi"]:
    data, _ = rrq(name)
    op, code = struct.unpack("!HH", data[:4])
    print("refused", name.decode(), op, code)
"#;

#[test]
fn a_tsize_probe_then_abort_then_rrq_again_is_served_and_bad_paths_are_refused() {
    let (ns, dir, seed) = started();
    let out_path = dir.path().join("rom-ipxe.efi");
    let out = ns
        .in_cli("timeout")
        .args(["60", "python3", "-c", PXE_ROM, SEED_IP])
        .arg(&out_path)
        .output()
        .unwrap();
    let metrics = ns
        .in_cli("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{SEED_IP}:8080/metrics"))
        .output()
        .unwrap();
    seed.stop();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("blksize 1468\n"), "{stdout}");
    // The probe and the blksize check were aborted by the client; four paths were refused.
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for line in [
        "seed_tftp_transfers_total{outcome=\"completed\"} 1",
        "seed_tftp_transfers_total{outcome=\"aborted\"} 2",
        "seed_tftp_transfers_total{outcome=\"failed\"} 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in\n{metrics}"
        );
    }
    let want = firmware("ipxe.efi");
    assert!(
        stdout.contains(&format!("tsize {}", want.len())),
        "{stdout}"
    );
    assert!(
        std::fs::read(&out_path).unwrap() == want,
        "the download after the probe differs"
    );
    for (name, code) in [
        ("../etc/passwd", 2),
        ("/etc/passwd", 2),
        ("a/../../etc/passwd", 2),
        ("missing.efi", 1),
    ] {
        assert!(
            stdout.contains(&format!("refused {name} 5 {code}")),
            "{name}: {stdout}"
        );
    }
}

/// A rack of 200 machines PXE-booting at once: 200 addresses (seed caps transfers per client
/// address, as a firmware runs one or two), each downloading ipxe.efi.
#[test]
fn two_hundred_concurrent_downloads_all_complete() {
    let (ns, dir, seed) = started();
    for i in 0..200 {
        ns.add_client_address(&format!("10.99.10.{}/24", 51 + i));
    }
    let out_dir = dir.path().join("many");
    std::fs::create_dir(&out_dir).unwrap();
    let script = format!(
        "seq 200 | xargs -P 200 -I{{}} sh -c 'curl -sS --max-time 120 --tftp-blksize 1468 \
         --interface 10.99.10.$((50 + {{}})) -o {}/{{}} tftp://{SEED_IP}/ipxe.efi'",
        out_dir.display()
    );
    let out = ns
        .in_cli("timeout")
        .args(["180", "sh", "-c", &script])
        .output()
        .unwrap();
    seed.stop();
    assert!(out.status.success(), "{}", describe(&out));
    let want = firmware("ipxe.efi");
    let mut complete = 0;
    for i in 1..=200 {
        if std::fs::read(out_dir.join(i.to_string())).is_ok_and(|got| got == want) {
            complete += 1;
        }
    }
    assert_eq!(complete, 200, "{}", describe(&out));
}

#[test]
fn files_of_the_operator_directory_are_served_too() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    // 5 MiB that is not all zeros, and not a multiple of the block size.
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 123)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let config = ns.config(dir.path(), "10.99.10.0/24", "", NODES);
    with_seed_settings(&config, &format!("tftp_root: {}", root.display()));
    let seed = ns.start_seed(&config, &dir.path().join("state"));
    ns.add_client_address("10.99.10.50/24");
    let out_path = dir.path().join("got.bin");
    let out = atftp_get(&ns, "big.bin", &out_path);
    seed.stop();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(std::fs::read(&out_path).unwrap() == data, "big.bin differs");
}
