//! The config drive a written image boots with: a NoCloud `cidata` volume (ISO 9660 with Rock
//! Ridge names, as `cloud-localds` writes it) holding the node's `user-data`, `meta-data` and
//! `network-config`, in a partition of its own at the end of the disk, where the image's
//! partitions cannot reach. cloud-init's NoCloud datasource finds it by its label.
//!
//! An image is smaller than the disk it is written to, so its GPT ends where the image ends:
//! the backup header and table are moved to the disk's last sectors, the partition is added to
//! the table, both headers get their CRCs again, and the protective MBR is widened to the
//! disk (what `sgdisk -e` then `sgdisk -n` would do; `sgdisk -v` finds nothing to fix). An
//! MBR-partitioned image gets a primary partition in a free slot. Ironic's agent places its
//! config drive the same way.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The volume label cloud-init looks for.
pub const LABEL: &str = "cidata";
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 1 << 20;
/// "Linux filesystem data" (0FC63DAF-8483-4772-8E79-3D69D8477DE4) as GPT stores it.
const LINUX_DATA: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];

/// Why the config drive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// The disk cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The disk.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The disk's partition table leaves no room or no slot.
    #[error("{}: {why}", path.display())]
    Table {
        /// The disk.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Where the config drive went (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// Its partition's start.
    pub start: u64,
    /// Its partition's length.
    pub len: u64,
    /// The partition number (1-based).
    pub number: u32,
}

/// The `cidata` volume for these documents.
pub fn volume(
    user_data: &[u8],
    meta_data: &[u8],
    network_config: &[u8],
) -> Result<Vec<u8>, String> {
    images::iso9660::build::build(
        LABEL,
        &[
            ("user-data", user_data),
            ("meta-data", meta_data),
            ("network-config", network_config),
        ],
    )
}

/// Adds `volume` as a partition at the end of the disk at `path` (GPT counted in `sector`
/// bytes; MBR in 512).
pub fn attach(path: &Path, sector: u64, volume: &[u8]) -> Result<Placed, ConfigDriveError> {
    let io = |source| ConfigDriveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let table = |why: String| ConfigDriveError::Table {
        path: path.to_path_buf(),
        why,
    };
    let disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let size = {
        let mut f = &disk;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(io)?
    };
    let mut header = vec![0u8; sector as usize];
    disk.read_exact_at(&mut header, sector).map_err(io)?;
    let placed = if &header[..8] == b"EFI PART" {
        gpt(&disk, size, sector, header, volume).map_err(table)?
    } else {
        mbr(&disk, size, volume).map_err(table)?
    };
    disk.write_all_at(volume, placed.start).map_err(io)?;
    disk.sync_all().map_err(io)?;
    Ok(placed)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn gpt(
    disk: &File,
    size: u64,
    sector: u64,
    mut header: Vec<u8>,
    volume: &[u8],
) -> Result<Placed, String> {
    let header_size = u32_at(&header, 12) as usize;
    let entries_lba = u64_at(&header, 72);
    let count = u32_at(&header, 80);
    let entry_size = u32_at(&header, 84) as usize;
    if !(92..=sector as usize).contains(&header_size)
        || !(128..=1024).contains(&entry_size)
        || count == 0
        || count > 1024
    {
        return Err("the GPT header is not one this agent writes to".into());
    }
    let table_len = count as usize * entry_size;
    let table_sectors = (table_len as u64).div_ceil(sector);
    let mut entries = vec![0u8; table_len];
    disk.read_exact_at(&mut entries, entries_lba * sector)
        .map_err(|e| format!("the GPT entries: {e}"))?;
    let last_lba = size / sector - 1;
    let last_usable = last_lba - table_sectors - 1;
    let used_end = entries
        .chunks_exact(entry_size)
        .filter(|e| e[..16].iter().any(|&b| b != 0))
        .map(|e| u64_at(e, 40))
        .max()
        .unwrap_or(0);
    let (slot, _) = entries
        .chunks_exact(entry_size)
        .enumerate()
        .find(|(_, e)| e[..16].iter().all(|&b| b == 0))
        .ok_or("every GPT entry is taken")?;
    let align = ALIGN / sector;
    // Whole MiBs: the partition ends on a boundary too (sgdisk cautions otherwise).
    let len_sectors = (volume.len() as u64).div_ceil(ALIGN) * align;
    let start = (last_usable + 1 - len_sectors) / align * align;
    if start <= used_end {
        return Err(format!(
            "no room after the image's partitions for a {} KiB config drive",
            volume.len() >> 10
        ));
    }
    let end = start + len_sectors - 1;
    let e = &mut entries[slot * entry_size..(slot + 1) * entry_size];
    e.fill(0);
    e[..16].copy_from_slice(&LINUX_DATA);
    let mut unique = [0u8; 16];
    let _ = getrandom::fill(&mut unique);
    unique[7] = (unique[7] & 0x0f) | 0x40; // version 4, stored little-endian
    unique[8] = (unique[8] & 0x3f) | 0x80;
    e[16..32].copy_from_slice(&unique);
    e[32..40].copy_from_slice(&start.to_le_bytes());
    e[40..48].copy_from_slice(&end.to_le_bytes());
    for (i, unit) in "config-drive".encode_utf16().enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let old_backup = u64_at(&header, 32);
    let entries_crc = crc32(&entries);
    header[32..40].copy_from_slice(&last_lba.to_le_bytes());
    header[48..56].copy_from_slice(&last_usable.to_le_bytes());
    header[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let seal = |h: &mut Vec<u8>| {
        h[16..20].fill(0);
        let crc = crc32(&h[..header_size]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
    };
    seal(&mut header);
    let mut backup = header.clone();
    backup[24..32].copy_from_slice(&last_lba.to_le_bytes());
    backup[32..40].copy_from_slice(&1u64.to_le_bytes());
    backup[72..80].copy_from_slice(&(last_lba - table_sectors).to_le_bytes());
    seal(&mut backup);
    let write = |bytes: &[u8], lba: u64| {
        disk.write_all_at(bytes, lba * sector)
            .map_err(|e| format!("writing the GPT: {e}"))
    };
    // The image's own backup header, where the image ended, would be a second, stale GPT.
    if old_backup != last_lba && old_backup > entries_lba && old_backup < start {
        write(&vec![0u8; sector as usize], old_backup)?;
    }
    write(&entries, entries_lba)?;
    write(&header, 1)?;
    write(&entries, last_lba - table_sectors)?;
    write(&backup, last_lba)?;
    // The protective MBR covers the whole disk (UEFI 2.10 5.2.3), as far as 32 bits reach.
    let mut mbr = [0u8; 512];
    disk.read_exact_at(&mut mbr, 0)
        .map_err(|e| format!("the protective MBR: {e}"))?;
    if mbr[446 + 4] == 0xee {
        let sectors = u32::try_from(size / 512 - 1).unwrap_or(u32::MAX);
        mbr[446 + 12..446 + 16].copy_from_slice(&sectors.to_le_bytes());
        disk.write_all_at(&mbr, 0)
            .map_err(|e| format!("the protective MBR: {e}"))?;
    }
    Ok(Placed {
        start: start * sector,
        len: len_sectors * sector,
        number: slot as u32 + 1,
    })
}

fn mbr(disk: &File, size: u64, volume: &[u8]) -> Result<Placed, String> {
    let mut mbr = [0u8; 512];
    disk.read_exact_at(&mut mbr, 0)
        .map_err(|e| format!("the MBR: {e}"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err("the image has no partition table (neither GPT nor MBR)".into());
    }
    let entry = |i: usize| &mbr[446 + 16 * i..446 + 16 * (i + 1)];
    let used_end = (0..4)
        .filter(|&i| entry(i)[4] != 0)
        .map(|i| u64::from(u32_at(entry(i), 8)) + u64::from(u32_at(entry(i), 12)))
        .max()
        .unwrap_or(0);
    let slot = (0..4)
        .find(|&i| entry(i)[4] == 0)
        .ok_or("all four MBR partitions are taken")?;
    let len = (volume.len() as u64).div_ceil(ALIGN) * (ALIGN / 512);
    let last = (size / 512).min(u64::from(u32::MAX));
    let start = (last - len) / (ALIGN / 512) * (ALIGN / 512);
    if start < used_end {
        return Err("no room after the image's partitions for the config drive".into());
    }
    let e = &mut mbr[446 + 16 * slot..446 + 16 * (slot + 1)];
    e.fill(0);
    // CHS fields say "beyond CHS" (LBA only).
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0x83;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    disk.write_all_at(&mbr, 0)
        .map_err(|e| format!("the MBR: {e}"))?;
    Ok(Placed {
        start: start * 512,
        len: len * 512,
        number: slot as u32 + 1,
    })
}
