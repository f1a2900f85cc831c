//! Cleaning a disk before an image is written: what makes a new system trip over the old one
//! is metadata, not data. A stale md superblock gets an old array assembled over a new
//! partition, an LVM PV label an old volume group activated, a backup GPT "repaired" back over
//! the new table. Those signatures live near the start and the end of the disk and of each
//! partition, so the agent zeroes there:
//!
//! - the first and last 2 MiB of the disk: MBR, primary and backup GPT, and what sits at the
//!   start of a whole-disk member (md 1.1/1.2 at 0/4 KiB, LVM's label in sector 0-3 and its
//!   metadata area, ZFS labels L0/L1 in the first 512 KiB and L2/L3 in the last, bcache,
//!   Ceph's BlueStore label) or at its end (md 0.90 at 64 KiB-aligned end, md 1.0 at end-8 KiB);
//! - the same for every partition the primary GPT, the backup GPT or the MBR names (the
//!   tables are read before they are wiped, so a partition either table still knows is
//!   cleaned);
//! - btrfs's mirror superblocks at 64 MiB and 256 GiB of the disk and of each partition.
//!
//! This is what `wipefs --all` finds and more (wipefs removes only the signatures libblkid
//! probes, and only of the device it is given). Filesystem data is left: an image writes
//! over it. Not covered: logical partitions inside an MBR extended partition (their starts lie
//! in the extended region's own tables) beyond the extended partition's first and last 2 MiB.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Zeroed at each end of the disk and of each partition.
const EDGE: u64 = 2 << 20;
/// btrfs's superblock mirrors (the primary at 64 KiB is in the first 2 MiB).
const BTRFS_MIRRORS: [u64; 2] = [64 << 20, 256 << 30];
/// The most partition entries read from one GPT (the standard table has 128).
const MAX_GPT_ENTRIES: u32 = 1024;

/// How a wipe failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct WipeError {
    /// The disk.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// One partition, in bytes from the start of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    /// Where it starts.
    pub start: u64,
    /// Its length.
    pub len: u64,
}

/// What a wipe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiped {
    /// The partitions found in the disk's tables.
    pub partitions: Vec<Partition>,
    /// Bytes zeroed.
    pub zeroed: u64,
}

/// Wipe the disk (or disk image file) at `path` of its metadata, as the module says;
/// `sector` is its logical block size (512, or 4096 for 4Kn disks), which GPT counts in.
pub fn wipe(path: &Path, sector: u64) -> Result<Wiped, WipeError> {
    let err = |source| WipeError {
        path: path.to_path_buf(),
        source,
    };
    let disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    let size = {
        let mut f = &disk;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(err)?
    };
    let partitions = partitions(&disk, size, sector);
    let mut regions = edges(0, size);
    for p in &partitions {
        regions.extend(edges(p.start, p.len.min(size.saturating_sub(p.start))));
    }
    let regions = merge(regions);
    let zeros = vec![0u8; 1 << 20];
    let mut zeroed = 0;
    for (start, len) in &regions {
        let mut at = *start;
        while at < start + len {
            let n = (start + len - at).min(zeros.len() as u64) as usize;
            disk.write_all_at(&zeros[..n], at).map_err(err)?;
            at += n as u64;
        }
        zeroed += len;
    }
    // On the disk before anything is written over it: a power cut must not bring the old
    // tables back.
    disk.sync_all().map_err(err)?;
    Ok(Wiped { partitions, zeroed })
}

/// The regions to zero for an area of `len` bytes at `start`: its edges and btrfs mirrors.
fn edges(start: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = vec![(start, len.min(EDGE))];
    if len > EDGE {
        out.push((start + len - EDGE, EDGE));
    }
    for mirror in BTRFS_MIRRORS {
        if mirror + 4096 <= len {
            out.push((start + mirror, 4096));
        }
    }
    out
}

/// Sorted, overlapping and touching regions joined.
fn merge(mut regions: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    regions.retain(|r| r.1 > 0);
    regions.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, len) in regions {
        match out.last_mut() {
            Some(last) if start <= last.0 + last.1 => {
                last.1 = last.1.max(start + len - last.0);
            }
            _ => out.push((start, len)),
        }
    }
    out
}

/// Every partition the primary GPT, the backup GPT or the MBR names, once each.
pub fn partitions(disk: &File, size: u64, sector: u64) -> Vec<Partition> {
    let mut found = Vec::new();
    let read = |at: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        disk.read_exact_at(&mut buf, at).ok()?;
        Some(buf)
    };
    if let Some(mbr) = read(0, 512)
        && mbr[510..512] == [0x55, 0xaa]
    {
        for i in 0..4 {
            let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
            let kind = e[4];
            let start = u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]]));
            let len = u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]]));
            // 0xee: GPT's protective entry, the whole disk.
            if kind != 0 && kind != 0xee && len > 0 {
                found.push(Partition {
                    start: start * 512,
                    len: len * 512,
                });
            }
        }
    }
    let last_lba = (size / sector).saturating_sub(1);
    for header_lba in [1, last_lba] {
        let Some(header) = read(header_lba * sector, 92) else {
            continue;
        };
        if &header[..8] != b"EFI PART" {
            continue;
        }
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
        let u32_at =
            |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap_or_default());
        let entries_lba = u64_at(72);
        let count = u32_at(80).min(MAX_GPT_ENTRIES);
        let entry_size = u32_at(84);
        if !(128..=1024).contains(&entry_size) || entries_lba > last_lba {
            continue;
        }
        let Some(table) = read(entries_lba * sector, (count * entry_size) as usize) else {
            continue;
        };
        for entry in table.chunks_exact(entry_size as usize) {
            if entry[..16].iter().all(|&b| b == 0) {
                continue;
            }
            let first = u64::from_le_bytes(entry[32..40].try_into().unwrap_or_default());
            let last = u64::from_le_bytes(entry[40..48].try_into().unwrap_or_default());
            if first <= last && last <= last_lba {
                found.push(Partition {
                    start: first * sector,
                    len: (last - first + 1) * sector,
                });
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_cover_both_edges_and_mirrors_and_merge() {
        let gib = 1u64 << 30;
        let disk = edges(0, 300 * gib);
        assert!(disk.contains(&(0, EDGE)));
        assert!(disk.contains(&(300 * gib - EDGE, EDGE)));
        assert!(disk.contains(&(64 << 20, 4096)));
        assert!(disk.contains(&(256 * gib, 4096)));
        // A small partition: one edge region, no mirrors.
        assert_eq!(edges(1 << 20, 1 << 20), vec![(1 << 20, 1 << 20)]);
        assert_eq!(
            merge(vec![(10, 5), (0, 4), (4, 2), (12, 10), (40, 0)]),
            vec![(0, 6), (10, 12)]
        );
    }
}
