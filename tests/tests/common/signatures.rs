//! An old system's metadata on a disk, written to its formats and checksums so libblkid (and
//! the kernel) would believe it: what seed's agent must wipe before it writes an image.

use std::path::Path;

use super::{describe, need};

/// An md 1.2 superblock (`struct mdp_superblock_1`, linux/raid/md_p.h), for a RAID-1 member
/// at the start of the area it is written 4 KiB into; checksummed as the kernel does
/// (`calc_sb_1_csum`), so libblkid believes it.
pub fn md_superblock() -> Vec<u8> {
    let max_dev = 2usize;
    let mut sb = vec![0u8; 256 + 2 * max_dev];
    let put32 = |sb: &mut [u8], at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |sb: &mut [u8], at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, 0xa92b_4efc); // magic
    put32(&mut sb, 4, 1); // major version
    sb[16..32].copy_from_slice(b"seed-old-array!!"); // set uuid
    sb[32..40].copy_from_slice(b"old:md0\0"); // set name
    put32(&mut sb, 72, 1); // level
    put64(&mut sb, 80, 200_000); // size (sectors)
    put32(&mut sb, 92, 2); // raid disks
    put64(&mut sb, 128, 2048); // data offset
    put64(&mut sb, 136, 200_000); // data size
    put64(&mut sb, 144, 8); // super offset: 4 KiB, version 1.2
    sb[168..184].copy_from_slice(b"seed-old-member!"); // device uuid
    put64(&mut sb, 200, 42); // events
    put32(&mut sb, 220, max_dev as u32);
    // dev_roles: this device is 0, the other 1.
    sb[256..260].copy_from_slice(&[0, 0, 1, 0]);
    let mut sum: u64 = 0;
    for word in sb.chunks_exact(4) {
        sum += u64::from(u32::from_le_bytes(word.try_into().unwrap()));
    }
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    put32(&mut sb, 216, csum);
    sb
}

/// LVM2's label sector (`label_header` + `pv_header`, lib/label/label.h): "LABELONE", its
/// CRC (LVM's: CRC-32 reflected, initial 0xf597a6cf, no final inversion) over the rest of
/// the sector, "LVM2 001", a PV UUID.
pub fn lvm_label() -> Vec<u8> {
    let mut s = vec![0u8; 512];
    s[..8].copy_from_slice(b"LABELONE");
    s[8..16].copy_from_slice(&1u64.to_le_bytes());
    s[20..24].copy_from_slice(&32u32.to_le_bytes());
    s[24..32].copy_from_slice(b"LVM2 001");
    s[32..64].copy_from_slice(b"seedOLDpv0000000000000000000000a");
    s[64..72].copy_from_slice(&(128u64 << 20).to_le_bytes());
    let mut crc: u32 = 0xf597_a6cf;
    for &b in &s[20..] {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    s[16..20].copy_from_slice(&crc.to_le_bytes());
    s
}

/// What libblkid finds at `offset` of `disk` (`blkid -p -O`): its TYPE or PTTYPE, or nothing.
pub fn blkid_at(disk: &Path, offset: u64) -> Option<String> {
    let out = std::process::Command::new(need("blkid"))
        .args(["-p", "-o", "export", "-O"])
        .arg(offset.to_string())
        .arg(disk)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("TYPE=")
                        .or_else(|| l.strip_prefix("PTTYPE="))
                })
                .map(str::to_string)
        }
        Some(2) => None,
        _ => panic!("blkid: {}", describe(&out)),
    }
}

/// Leaves an old system on the disk (image file) `disk` from byte `base` on: a GPT (sgdisk)
/// with three partitions of 128, 128 and 64 MiB, an md RAID-1 member in the first, an LVM PV
/// in the second and ext4 (mkfs.ext4) in the third. Returns their offsets in bytes. `base` is
/// where the partitions start (the GPT itself is always at the disk's start and end).
pub fn old_system(disk: &Path, base: u64) -> [u64; 3] {
    let mib = 1u64 << 20;
    let first = (base.max(mib)) / 512;
    let run = |args: &[String]| {
        let out = std::process::Command::new(need("sgdisk"))
            .args(args)
            .arg(disk)
            .output()
            .unwrap();
        assert!(out.status.success(), "sgdisk: {}", describe(&out));
    };
    run(&[
        "-n".into(),
        format!("1:{first}:+128M"),
        "-t".into(),
        "1:fd00".into(),
        "-n".into(),
        "2:0:+128M".into(),
        "-t".into(),
        "2:8e00".into(),
        "-n".into(),
        "3:0:+64M".into(),
        "-t".into(),
        "3:8300".into(),
    ]);
    let p1 = first * 512;
    let (p2, p3) = (p1 + 128 * mib, p1 + 256 * mib);
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    file.write_all_at(&md_superblock(), p1 + 4096).unwrap();
    file.write_all_at(&lvm_label(), p2 + 512).unwrap();
    drop(file);
    let out = std::process::Command::new(need("mkfs.ext4"))
        .args(["-q", "-F", "-E"])
        .arg(format!("offset={p3}"))
        .arg(disk)
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {}", describe(&out));
    for (at, what) in [
        (0, "gpt"),
        (p1, "linux_raid_member"),
        (p2, "LVM2_member"),
        (p3, "ext4"),
    ] {
        assert_eq!(blkid_at(disk, at).as_deref(), Some(what), "at {at}");
    }
    [p1, p2, p3]
}
