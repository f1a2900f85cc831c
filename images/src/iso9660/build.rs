//! Writing a small ISO 9660 image: one directory of files with Rock Ridge names (what
//! `genisoimage -R`, and `cloud-localds`, write for a NoCloud `cidata` volume). Enough for a
//! config drive: the names cloud-init reads (`user-data`, `meta-data`, `network-config`) are
//! not ISO 9660 d-characters, so each record carries a Rock Ridge `NM` entry with the real name
//! and the root's `.` record the SUSP `SP` entry that announces them (SUSP 5.3, RRIP 4.1.4).

/// ISO 9660's logical sector.
const SECTOR: usize = 2048;
/// Where the volume descriptors start (sectors 0-15 are the system area).
const PVD: usize = 16;

/// An ISO 9660 image with volume id `volume` (`cidata`) and `files` in its root directory.
/// Names are written as Rock Ridge names; their ISO 9660 names are `FILE0000.;1` and on.
/// The root directory must fit one sector: a config drive has three files.
pub fn build(volume: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let root_at = PVD + 4; // PVD, terminator, L and M path tables
    let mut data_at = root_at + 1;
    let mut records = vec![
        dir_record(&[0], root_at, SECTOR, true, &root_system_use()),
        dir_record(&[1], root_at, SECTOR, true, &[]),
    ];
    let mut extents = Vec::new();
    for (i, (name, bytes)) in files.iter().enumerate() {
        if name.is_empty() || name.len() > 200 || name.contains('/') {
            return Err(format!("`{name}` cannot be a file name here"));
        }
        let iso_name = format!("FILE{i:04}.;1");
        let mut nm = vec![b'N', b'M', (5 + name.len()) as u8, 1, 0];
        nm.extend(name.as_bytes());
        records.push(dir_record(
            iso_name.as_bytes(),
            data_at,
            bytes.len(),
            false,
            &nm,
        ));
        extents.push(data_at);
        data_at += bytes.len().div_ceil(SECTOR).max(1);
    }
    let dir: Vec<u8> = records.concat();
    if dir.len() > SECTOR {
        return Err(format!(
            "{} files do not fit one directory sector",
            files.len()
        ));
    }
    let total = data_at;
    let mut image = vec![0u8; total * SECTOR];
    let sector = |n: usize| n * SECTOR;

    // Primary volume descriptor (ECMA-119 8.4).
    let pvd = &mut image[sector(PVD)..sector(PVD + 1)];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pad(&mut pvd[8..40], "LINUX");
    // As given: `cloud-localds` (genisoimage -V cidata) writes the label in lower case.
    pad(&mut pvd[40..72], volume);
    both32(&mut pvd[80..88], total as u32);
    both16(&mut pvd[120..124], 1); // volume set size
    both16(&mut pvd[124..128], 1); // volume sequence number
    both16(&mut pvd[128..132], SECTOR as u16);
    both32(&mut pvd[132..140], 10); // path table size: one entry
    pvd[140..144].copy_from_slice(&((PVD + 2) as u32).to_le_bytes());
    pvd[148..152].copy_from_slice(&((PVD + 3) as u32).to_be_bytes());
    let root = dir_record(&[0], root_at, SECTOR, true, &[]);
    pvd[156..156 + 34].copy_from_slice(&root[..34]);
    for range in [
        190..318,
        318..446,
        446..574,
        574..702,
        702..739,
        739..776,
        776..813,
    ] {
        pad(&mut pvd[range], "");
    }
    for at in [813, 830, 847, 864] {
        // Dates as "not specified": sixteen '0' digits and a zero offset.
        pvd[at..at + 16].copy_from_slice(b"0000000000000000");
    }
    pvd[881] = 1; // file structure version
    // Volume descriptor set terminator.
    let term = &mut image[sector(PVD + 1)..sector(PVD + 2)];
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    // Path tables, little- and big-endian: the root alone (ECMA-119 9.4).
    for (n, big) in [(PVD + 2, false), (PVD + 3, true)] {
        let t = &mut image[sector(n)..sector(n) + 10];
        t[0] = 1; // name length
        let at = root_at as u32;
        t[2..6].copy_from_slice(&if big {
            at.to_be_bytes()
        } else {
            at.to_le_bytes()
        });
        t[6..8].copy_from_slice(&if big {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        });
    }
    image[sector(root_at)..sector(root_at) + dir.len()].copy_from_slice(&dir);
    for ((_, bytes), at) in files.iter().zip(extents) {
        image[sector(at)..sector(at) + bytes.len()].copy_from_slice(bytes);
    }
    Ok(image)
}

/// SUSP's `SP` entry (Rock Ridge is in use, nothing to skip) and the `ER` entry that names
/// the extension (RRIP 1.12's identifier).
fn root_system_use() -> Vec<u8> {
    let mut su = vec![b'S', b'P', 7, 1, 0xBE, 0xEF, 0];
    let id = b"IEEE_1282";
    let descriptor = b"THE IEEE 1282 PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS.";
    let source = b"PLEASE CONTACT THE IEEE STANDARDS DEPARTMENT, PISCATAWAY, NJ, USA FOR THE 1282 SPECIFICATION.";
    su.extend([
        b'E',
        b'R',
        (8 + id.len() + descriptor.len() + source.len()) as u8,
        1,
        id.len() as u8,
        descriptor.len() as u8,
        source.len() as u8,
        1,
    ]);
    su.extend(id);
    su.extend(descriptor);
    su.extend(source);
    su
}

/// A directory record (ECMA-119 9.1) with `system_use` after the name.
fn dir_record(name: &[u8], extent: usize, len: usize, dir: bool, system_use: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r.extend(name);
    if name.len().is_multiple_of(2) {
        r.push(0); // padding: the system use area starts at an even offset
    }
    r.extend(system_use);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    both32(&mut r[2..10], extent as u32);
    both32(&mut r[10..18], len as u32);
    // 2026-01-01 00:00:00 UTC: a fixed date, so the same documents make the same image.
    r[18..25].copy_from_slice(&[126, 1, 1, 0, 0, 0, 0]);
    r[25] = if dir { 2 } else { 0 };
    both16(&mut r[28..32], 1);
    r[32] = name.len() as u8;
    r
}

fn both32(out: &mut [u8], v: u32) {
    out[..4].copy_from_slice(&v.to_le_bytes());
    out[4..8].copy_from_slice(&v.to_be_bytes());
}

fn both16(out: &mut [u8], v: u16) {
    out[..2].copy_from_slice(&v.to_le_bytes());
    out[2..4].copy_from_slice(&v.to_be_bytes());
}

/// `text` padded with spaces (a-characters fields).
fn pad(out: &mut [u8], text: &str) {
    out.fill(b' ');
    out[..text.len()].copy_from_slice(text.as_bytes());
}
