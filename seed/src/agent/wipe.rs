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
//!   cleaned), logical partitions of an MBR extended partition included, and the extended
//!   boot records (EBRs) that chain them;
//! - btrfs's mirror superblocks at 64 MiB and 256 GiB of the disk and of each partition.
//!
//! This is what `wipefs --all` finds and more (wipefs removes only the signatures libblkid
//! probes, and only of the device it is given). Filesystem data is left: an image writes
//! over it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Zeroed at each end of the disk and of each partition.
const EDGE: u64 = 2 << 20;
/// btrfs's superblock mirrors (the primary at 64 KiB is in the first 2 MiB).
const BTRFS_MIRRORS: [u64; 2] = [64 << 20, 256 << 30];
/// The most partition entries read from one GPT (the standard table has 128).
const MAX_GPT_ENTRIES: u32 = 1024;
/// MBR partition types of an extended partition: CHS (0x05), LBA (0x0f, Windows), Linux (0x85).
const EXTENDED: [u8; 3] = [0x05, 0x0f, 0x85];
/// The most logical partitions followed down one EBR chain (Linux numbers them up to 60 on
/// most drivers); a chain that loops or runs longer is not followed further.
const MAX_LOGICAL: usize = 128;

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
    /// The partitions found in the disk's tables (logical ones included).
    pub partitions: Vec<Partition>,
    /// Where the extended boot records of an MBR's logical partitions were (bytes).
    pub ebrs: Vec<u64>,
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
    let ebrs = ebrs(&disk, size);
    let mut regions = edges(0, size);
    for p in &partitions {
        regions.extend(edges(p.start, p.len.min(size.saturating_sub(p.start))));
    }
    regions.extend(ebrs.iter().filter(|&&at| at < size).map(|&at| (at, 512)));
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
    Ok(Wiped {
        partitions,
        ebrs,
        zeroed,
    })
}

/// Discard every block of the disk at `path` (the role's `discard: true`, `seed agent wipe
/// --discard`): `fallocate(PUNCH_HOLE)`, which a block device turns into a write-zeroes that
/// may unmap (NVMe deallocate, SCSI WRITE SAME with UNMAP, virtio-blk with the unmap flag) and
/// refuses where the device has no such offload rather than writing every byte; a file gets a
/// hole. Returns the bytes discarded.
pub fn discard(path: &Path) -> Result<u64, WipeError> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let err = |source| WipeError {
        path: path.to_path_buf(),
        source,
    };
    let disk = OpenOptions::new().write(true).open(path).map_err(err)?;
    let size = {
        let mut f = &disk;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(err)?
    };
    let len = i64::try_from(size).map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
    fallocate(
        &disk,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        len,
    )
    .map_err(|e| err(e.into()))?;
    disk.sync_all().map_err(err)?;
    Ok(size)
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

/// The four entries of an MBR or EBR sector that carries the 0x55aa signature: (type, first
/// sector, sectors), empty entries left out.
fn mbr_entries(sector: &[u8]) -> Vec<(u8, u64, u64)> {
    if sector.len() < 512 || sector[510..512] != [0x55, 0xaa] {
        return Vec::new();
    }
    (0..4)
        .map(|i| &sector[446 + 16 * i..446 + 16 * (i + 1)])
        .map(|e| {
            (
                e[4],
                u64::from(u32::from_le_bytes([e[8], e[9], e[10], e[11]])),
                u64::from(u32::from_le_bytes([e[12], e[13], e[14], e[15]])),
            )
        })
        .filter(|&(kind, _, len)| kind != 0 && len > 0)
        .collect()
}

fn read_at(disk: &File, at: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    disk.read_exact_at(&mut buf, at).ok()?;
    Some(buf)
}

/// The EBR chain of the MBR's extended partition: each EBR's byte offset and the logical
/// partition it describes. An EBR's first entry is its logical partition, relative to the EBR;
/// its second the next EBR, relative to the extended partition's start. MBR sectors are 512
/// bytes whatever the disk's logical block size.
fn logical(disk: &File, size: u64) -> Vec<(u64, Option<Partition>)> {
    let Some(mbr) = read_at(disk, 0, 512) else {
        return Vec::new();
    };
    let Some(&(_, ext_start, _)) = mbr_entries(&mbr)
        .iter()
        .find(|(kind, _, _)| EXTENDED.contains(kind))
    else {
        return Vec::new();
    };
    let ext = ext_start * 512;
    let mut chain = Vec::new();
    let mut at = ext;
    while chain.len() < MAX_LOGICAL && at < size {
        let Some(ebr) = read_at(disk, at, 512) else {
            break;
        };
        let entries = mbr_entries(&ebr);
        if entries.is_empty() && ebr[510..512] != [0x55, 0xaa] {
            break;
        }
        let part = entries
            .iter()
            .find(|(kind, _, _)| !EXTENDED.contains(kind))
            .map(|&(_, start, len)| Partition {
                start: at + start * 512,
                len: len * 512,
            });
        chain.push((at, part));
        match entries.iter().find(|(kind, _, _)| EXTENDED.contains(kind)) {
            // Each next EBR lies further on: anything else is a loop or garbage.
            Some(&(_, next, _)) if ext + next * 512 > at => at = ext + next * 512,
            _ => break,
        }
    }
    chain
}

/// Where the EBRs of the MBR's logical partitions are (bytes).
pub fn ebrs(disk: &File, size: u64) -> Vec<u64> {
    logical(disk, size).into_iter().map(|(at, _)| at).collect()
}

/// Every partition the primary GPT, the backup GPT or the MBR names (with the logical
/// partitions of its extended partition), once each.
pub fn partitions(disk: &File, size: u64, sector: u64) -> Vec<Partition> {
    let mut found = Vec::new();
    let read = |at: u64, len: usize| read_at(disk, at, len);
    if let Some(mbr) = read(0, 512) {
        // 0xee: GPT's protective entry, the whole disk.
        for (_, start, len) in mbr_entries(&mbr).into_iter().filter(|e| e.0 != 0xee) {
            found.push(Partition {
                start: start * 512,
                len: len * 512,
            });
        }
        found.extend(logical(disk, size).into_iter().filter_map(|(_, p)| p));
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

    /// An EBR chain whose second link points back at the first (corrupt, or hostile) is
    /// followed once, not forever.
    #[test]
    fn a_looping_ebr_chain_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut bytes = vec![0u8; 8 << 20];
        let entry = |sector: &mut [u8], i: usize, kind: u8, start: u32, len: u32| {
            let e = &mut sector[446 + 16 * i..446 + 16 * (i + 1)];
            e[4] = kind;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&len.to_le_bytes());
            sector[510] = 0x55;
            sector[511] = 0xaa;
        };
        // MBR: extended partition at sector 2048 for 8192 sectors.
        entry(&mut bytes[..512], 0, 0x05, 2048, 8192);
        // EBR 1 at 2048: logical at +2048; next EBR at ext + 4096.
        entry(&mut bytes[2048 * 512..2049 * 512], 0, 0x83, 2048, 1024);
        entry(&mut bytes[2048 * 512..2049 * 512], 1, 0x05, 4096, 2048);
        // EBR 2 at 6144: logical at +512; "next" back at the first EBR.
        entry(&mut bytes[6144 * 512..6145 * 512], 0, 0x8e, 512, 1024);
        entry(&mut bytes[6144 * 512..6145 * 512], 1, 0x05, 0, 2048);
        std::fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let size = bytes.len() as u64;
        assert_eq!(ebrs(&file, size), vec![2048 * 512, 6144 * 512]);
        assert_eq!(
            partitions(&file, size, 512),
            vec![
                Partition {
                    start: 2048 * 512,
                    len: 8192 * 512
                },
                Partition {
                    start: 4096 * 512,
                    len: 1024 * 512
                },
                Partition {
                    start: 6656 * 512,
                    len: 1024 * 512
                },
            ]
        );
    }

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
