#![allow(clippy::unwrap_used)]
//! Disk images from every source format convert to the same raw disk. The qcow2 files here are
//! built by hand after QEMU's `docs/interop/qcow2.txt` (small clusters, every kind of L2
//! entry); the integration tests convert what `qemu-img` itself writes.

use std::io::Write;

use super::*;

const CLUSTER: usize = 4096;

/// The raw disk every source below holds: a data cluster, two clusters of zeros, and 100
/// bytes of a last, partial cluster.
fn disk() -> Vec<u8> {
    let mut raw: Vec<u8> = (0..CLUSTER).map(|i| (i % 251) as u8 + 1).collect();
    raw.extend(vec![0u8; 2 * CLUSTER]);
    raw.extend((0..100u8).map(|i| (0xb0 ^ i) | 1));
    raw
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn put64(f: &mut [u8], at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn put32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// A version 3 qcow2 of [`disk`] with 4 KiB clusters: L1 at 4096, L2 at 8192; cluster 0
/// standard at 12288, cluster 1 a zero cluster, cluster 2 unallocated, cluster 3 compressed
/// (`zstd` or raw deflate) at an offset that is no sector boundary.
fn qcow2(zstd: bool) -> Vec<u8> {
    let raw = disk();
    // The compressed cluster holds more than the disk's last 100 bytes: noise past them (which
    // the disk's size cuts off) makes it span several sectors, so the descriptor's sector
    // count matters.
    let mut last = raw[3 * CLUSTER..].to_vec();
    let mut x = 0x2545_f491_u32;
    while last.len() < CLUSTER {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        last.push(x as u8);
    }
    let compressed = if zstd {
        ruzstd::encoding::compress_to_vec(&last[..], ruzstd::encoding::CompressionLevel::Fastest)
    } else {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&last).unwrap();
        e.finish().unwrap()
    };
    let at = 4 * CLUSTER + 5;
    // Something else follows the compressed data, as in a real image.
    let mut f = vec![0u8; at + compressed.len() + 1024];
    f[..4].copy_from_slice(qcow2::MAGIC);
    put32(&mut f, 4, 3);
    put32(&mut f, 20, 12);
    put64(&mut f, 24, raw.len() as u64);
    put32(&mut f, 36, 1);
    put64(&mut f, 40, CLUSTER as u64);
    put64(&mut f, 72, if zstd { 0b1000 } else { 0 });
    put32(&mut f, 96, 4);
    put32(&mut f, 100, 112);
    f[104] = u8::from(zstd);
    put64(&mut f, CLUSTER, (2 * CLUSTER as u64) | (1 << 63));
    let l2 = 2 * CLUSTER;
    put64(&mut f, l2, (3 * CLUSTER as u64) | (1 << 63));
    put64(&mut f, l2 + 8, 1);
    // Compressed: x = 62 - (12 - 8) = 58 offset bits, then the further sectors it spans.
    let sectors = ((at % 512) + compressed.len()).div_ceil(512) as u64 - 1;
    put64(&mut f, l2 + 24, (1 << 62) | (sectors << 58) | at as u64);
    f[3 * CLUSTER..4 * CLUSTER].copy_from_slice(&raw[..CLUSTER]);
    f[at..at + compressed.len()].copy_from_slice(&compressed);
    f[at + compressed.len()..].fill(0xff);
    f
}

fn compressed(format: Format, raw: &[u8]) -> Vec<u8> {
    match format {
        Format::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        Format::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        }
        Format::Zstd => {
            ruzstd::encoding::compress_to_vec(raw, ruzstd::encoding::CompressionLevel::Fastest)
        }
        Format::Xz => {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut &raw[..], &mut out).unwrap();
            out
        }
        Format::Raw => raw.to_vec(),
        Format::Qcow2 => unreachable!(),
    }
}

fn add(
    catalogue: &DiskCatalogue,
    dir: &Path,
    file: &str,
    bytes: &[u8],
    sha256: Option<&str>,
) -> Result<DiskImage, Error> {
    let source = dir.join(file);
    fs::write(&source, bytes).unwrap();
    catalogue.add("node-image", &source, sha256, true, &mut |_, _, _| {})
}

#[test]
fn every_source_format_becomes_the_same_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = DiskCatalogue::new(dir.path().join("disks"));
    let raw = disk();
    let mut sources: Vec<(Format, Vec<u8>)> = [
        Format::Raw,
        Format::Gzip,
        Format::Zstd,
        Format::Xz,
        Format::Bzip2,
    ]
    .into_iter()
    .map(|f| (f, compressed(f, &raw)))
    .collect();
    sources.push((Format::Qcow2, qcow2(false)));
    sources.push((Format::Qcow2, qcow2(true)));
    for (format, bytes) in sources {
        let image = add(&catalogue, dir.path(), "osism-node.img", &bytes, None).unwrap();
        assert_eq!(image.source.format, format);
        assert_eq!(image.source.sha256, sha(&bytes), "{format:?}");
        assert_eq!(image.size, raw.len() as u64, "{format:?}");
        assert_eq!(image.sha256, sha(&raw), "{format:?}");
        let written = fs::read(catalogue.root().join("node-image").join(DISK_FILE)).unwrap();
        assert!(written == raw, "{format:?}: the raw disk differs");
        assert_eq!(catalogue.get("node-image").unwrap(), Some(image));
    }
    assert_eq!(catalogue.list().unwrap().len(), 1);
    assert!(catalogue.remove("node-image").unwrap());
    assert!(catalogue.list().unwrap().is_empty());
}

#[test]
fn zeros_stay_holes_in_the_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = DiskCatalogue::new(dir.path().join("disks"));
    let mut raw = vec![0u8; 64 << 20];
    raw[..4096].fill(0xeb);
    let image = add(
        &catalogue,
        dir.path(),
        "sparse.img.gz",
        &compressed(Format::Gzip, &raw),
        None,
    )
    .unwrap();
    assert_eq!(image.size, 64 << 20);
    let meta = fs::metadata(catalogue.root().join("node-image").join(DISK_FILE)).unwrap();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    assert!(
        allocated < 4 << 20,
        "{allocated} bytes allocated for 4 KiB of data"
    );
}

#[test]
fn a_wrong_checksum_or_a_damaged_source_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = DiskCatalogue::new(dir.path().join("disks"));
    let raw = disk();
    let err = add(&catalogue, dir.path(), "a.img", &raw, Some(&"0".repeat(64))).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err}");

    let mut outside = qcow2(false);
    put64(&mut outside, CLUSTER, 64 * CLUSTER as u64);
    let mut backed = qcow2(false);
    put64(&mut backed, 8, 512);
    put32(&mut backed, 16, 8);
    let mut garbled = qcow2(false);
    let at = 4 * CLUSTER + 5;
    garbled[at..at + 16].fill(0xff);
    let mut truncated_gzip = compressed(Format::Gzip, &raw);
    truncated_gzip.truncate(truncated_gzip.len() / 2);
    for (bytes, says) in [
        (outside, "the L2 table at 262144 is outside the file"),
        (backed, "backing file"),
        (garbled, "the compressed cluster at 16389"),
        (truncated_gzip, "Gzip"),
    ] {
        let err = add(&catalogue, dir.path(), "bad.img", &bytes, None).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::Damaged { .. }) && text.contains("bad.img") && text.contains(says),
            "{text}"
        );
    }
    assert!(catalogue.list().unwrap().is_empty());
    let left: Vec<_> = fs::read_dir(catalogue.root()).unwrap().collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}
