//! Reading files out of an ISO 9660 image (ECMA-119) without mounting it: enough to take the
//! casper kernel and initrd out of Ubuntu's live-server ISO as an unprivileged process.
//!
//! Names come from Rock Ridge (`NM` entries of the System Use Sharing Protocol, as Ubuntu's
//! ISOs have them), else from the Joliet supplementary volume descriptor, else from the plain
//! ISO 9660 identifiers (upper case, `;1` versions), compared without case. Files spanning
//! several extents (ECMA-119 9.1.6, the multi-extent flag) are followed.
//!
//! Every read is positioned (`pread`) and bounds-checked against the image's size, so a
//! truncated or corrupt image is an error that names the file, never a panic or a short copy.

pub mod build;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// ECMA-119 6.1.2: sectors are 2048 bytes; the volume descriptors start at sector 16.
const SECTOR: u64 = 2048;
const FIRST_DESCRIPTOR: u64 = 16;
/// A descriptor set longer than this is not an ISO a tool made.
const MAX_DESCRIPTORS: u64 = 64;
/// Directory records: flag bits (ECMA-119 9.1.6).
const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_MULTI_EXTENT: u8 = 0x80;
/// A directory larger than this is corrupt (casper's has a handful of entries).
const MAX_DIRECTORY: u64 = 16 << 20;

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// Reading the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The image.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// No ISO 9660 volume descriptor where ECMA-119 puts it.
    #[error("{}: not an ISO 9660 image ({why})", path.display())]
    NotIso {
        /// The image.
        path: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// The file is shorter than the volume it describes (an interrupted download or copy).
    #[error(
        "{}: truncated: the file has {size} bytes, its volume descriptor says {expected} \
         (an interrupted download or copy?)",
        path.display()
    )]
    Truncated {
        /// The image.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The size its primary volume descriptor gives.
        expected: u64,
    },
    /// A structure inside the image is malformed.
    #[error("{}: corrupt: {why}", path.display())]
    Corrupt {
        /// The image.
        path: PathBuf,
        /// What.
        why: String,
    },
}

/// A directory record, as far as seed needs it.
#[derive(Debug, Clone)]
struct Record {
    /// The name to compare: Rock Ridge or Joliet as written, else the ISO identifier without
    /// its version, upper case.
    name: String,
    /// Whether `name` is the plain ISO identifier (compared without case).
    plain: bool,
    directory: bool,
    /// (byte offset, length) of each extent.
    extents: Vec<(u64, u64)>,
}

/// A file found in an image.
#[derive(Debug, Clone)]
pub struct IsoFile {
    /// Its path, as asked for.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    extents: Vec<(u64, u64)>,
}

/// Which names the image's directory tree carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Rock Ridge `NM` entries; `skip` is the SUSP `SP` entry's bytes to skip.
    RockRidge {
        /// SUSP `LEN_SKP`.
        skip: usize,
    },
    /// The Joliet tree (UCS-2 names).
    Joliet,
    /// Plain ISO 9660 identifiers.
    Plain,
}

/// An open image.
#[derive(Debug)]
pub struct Iso {
    file: File,
    path: PathBuf,
    size: u64,
    root: (u64, u64),
    names: Names,
}

impl Iso {
    /// Opens `path` and reads its volume descriptors.
    pub fn open(path: &Path) -> Result<Self, IsoError> {
        let file = File::open(path).map_err(|source| IsoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| IsoError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut iso = Self {
            file,
            path: path.to_path_buf(),
            size,
            root: (0, 0),
            names: Names::Plain,
        };
        if size < (FIRST_DESCRIPTOR + 1) * SECTOR {
            return Err(iso.not_iso(format!("{size} bytes is too short")));
        }
        let mut primary = None;
        let mut joliet = None;
        for n in FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + MAX_DESCRIPTORS {
            let mut d = vec![0u8; SECTOR as usize];
            iso.read_at(n * SECTOR, &mut d)?;
            if &d[1..6] != b"CD001" {
                return Err(iso.not_iso(format!("no CD001 in volume descriptor {n}")));
            }
            match d[0] {
                1 => primary = Some(d),
                // ECMA-119 8.5 (SVD); Joliet marks itself with a UCS-2 escape sequence.
                2 if [&b"%/@"[..], b"%/C", b"%/E"].contains(&&d[88..91]) => joliet = Some(d),
                255 => break,
                _ => {}
            }
        }
        let primary = primary.ok_or_else(|| iso.not_iso("no primary volume descriptor".into()))?;
        // ECMA-119 8.4.8 and 8.4.12: the volume's size in logical blocks, and the block size.
        let blocks = u64::from(le32(&primary[80..84]));
        let block = u64::from(u16::from_le_bytes([primary[128], primary[129]]));
        if block != SECTOR {
            return Err(iso.corrupt(format!("logical block size {block}, not 2048")));
        }
        let expected = blocks * block;
        if size < expected {
            return Err(IsoError::Truncated {
                path: iso.path.clone(),
                size,
                expected,
            });
        }
        let root = iso.record(&primary[156..190], Names::Plain)?;
        iso.root = root.extents[0];
        iso.names = match iso.susp_skip(iso.root)? {
            Some(skip) => Names::RockRidge { skip },
            None => match &joliet {
                Some(d) => {
                    iso.root = iso.record(&d[156..190], Names::Joliet)?.extents[0];
                    Names::Joliet
                }
                None => Names::Plain,
            },
        };
        Ok(iso)
    }

    /// Which names the image carries.
    pub fn names(&self) -> Names {
        self.names
    }

    /// The file at `path` (`casper/vmlinuz`), if the image has it.
    pub fn find(&self, path: &str) -> Result<Option<IsoFile>, IsoError> {
        let mut dir = self.root;
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let Some(record) = self
                .list(dir)?
                .into_iter()
                .find(|r| r.directory != last && matches(r, part))
            else {
                return Ok(None);
            };
            if last {
                return Ok(Some(IsoFile {
                    path: path.to_string(),
                    size: record.extents.iter().map(|(_, l)| l).sum(),
                    extents: record.extents,
                }));
            }
            dir = record.extents[0];
        }
        Ok(None)
    }

    /// Copies `file` to `out`, calling `progress` with the bytes copied so far.
    pub fn copy(
        &self,
        file: &IsoFile,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), IsoError> {
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        for &(start, len) in &file.extents {
            let mut at = 0u64;
            while at < len {
                let n = (len - at).min(buf.len() as u64) as usize;
                self.read_at(start + at, &mut buf[..n])?;
                out.write_all(&buf[..n]).map_err(|source| IsoError::Io {
                    path: PathBuf::from(&file.path),
                    source,
                })?;
                at += n as u64;
                done += n as u64;
                progress(done);
            }
        }
        Ok(())
    }

    /// A small file's bytes (at most `limit`).
    pub fn read(&self, file: &IsoFile, limit: u64) -> Result<Vec<u8>, IsoError> {
        if file.size > limit {
            return Err(self.corrupt(format!(
                "{} has {} bytes, more than the {limit} expected",
                file.path, file.size
            )));
        }
        let mut out = Vec::with_capacity(file.size as usize);
        self.copy(file, &mut out, &mut |_| {})?;
        Ok(out)
    }

    /// The records of the directory at `extent`, without `.` and `..`.
    fn list(&self, (start, len): (u64, u64)) -> Result<Vec<Record>, IsoError> {
        if len > MAX_DIRECTORY {
            return Err(self.corrupt(format!("a directory of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        self.read_at(start, &mut data)?;
        let mut out: Vec<Record> = Vec::new();
        let mut continues = false;
        let mut at = 0usize;
        while at < data.len() {
            let length = usize::from(data[at]);
            if length == 0 {
                // ECMA-119 6.8.1.1: records do not cross sectors; a zero pads to the next one.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let Some(raw) = data.get(at..at + length) else {
                return Err(self.corrupt(format!(
                    "a directory record overruns its directory at {start}"
                )));
            };
            at += length;
            let record = self.record(raw, self.names)?;
            let flags = raw[25];
            if continues && let Some(last) = out.last_mut() {
                // The next extent of a multi-extent file (same name, ECMA-119 6.5.1).
                last.extents.extend(record.extents);
            } else if !record.name.is_empty() {
                out.push(record);
            }
            continues = flags & FLAG_MULTI_EXTENT != 0;
        }
        Ok(out)
    }

    /// Parses one directory record; `.` and `..` get an empty name.
    fn record(&self, raw: &[u8], names: Names) -> Result<Record, IsoError> {
        if raw.len() < 34 {
            return Err(self.corrupt(format!("a directory record of {} bytes", raw.len())));
        }
        let extent = u64::from(le32(&raw[2..6])) * SECTOR;
        let len = u64::from(le32(&raw[10..14]));
        let id_len = usize::from(raw[32]);
        let Some(id) = raw.get(33..33 + id_len) else {
            return Err(self.corrupt("a file identifier overruns its record".into()));
        };
        if extent + len > self.size {
            return Err(IsoError::Truncated {
                path: self.path.clone(),
                size: self.size,
                expected: extent + len,
            });
        }
        let dot = id == [0] || id == [1];
        // ECMA-119 9.1.12: a pad byte follows an identifier of even length.
        let system_use = raw
            .get(33 + id_len + usize::from(id_len % 2 == 0)..)
            .unwrap_or(&[]);
        let (name, plain) = if dot {
            (String::new(), false)
        } else {
            match names {
                Names::RockRidge { skip } => match self.rock_ridge_name(system_use, skip)? {
                    Some(name) => (name, false),
                    None => (plain_name(id), true),
                },
                Names::Joliet => (joliet_name(id), false),
                Names::Plain => (plain_name(id), true),
            }
        };
        Ok(Record {
            name,
            plain,
            directory: raw[25] & FLAG_DIRECTORY != 0,
            extents: vec![(extent, len)],
        })
    }

    /// SUSP (IEEE P1281) 5.3: the root's `.` record starts its System Use area with `SP`
    /// (check bytes BE EF) when the tree carries SUSP entries such as Rock Ridge's.
    fn susp_skip(&self, root: (u64, u64)) -> Result<Option<usize>, IsoError> {
        let mut first = vec![0u8; usize::from(u8::MAX)];
        let n = first.len().min(root.1 as usize);
        self.read_at(root.0, &mut first[..n])?;
        let length = usize::from(first[0]);
        if length < 34 || first[32] != 1 || first[33] != 0 {
            return Ok(None);
        }
        let su = &first[34..length.min(n)];
        Ok(
            (su.len() >= 7 && &su[0..2] == b"SP" && su[4] == 0xBE && su[5] == 0xEF)
                .then(|| usize::from(su[6])),
        )
    }

    /// The Rock Ridge name (RRIP 4.1.4 `NM`) in a System Use area, following `CE`
    /// continuation areas (SUSP 5.1).
    fn rock_ridge_name(&self, system_use: &[u8], skip: usize) -> Result<Option<String>, IsoError> {
        let mut area = system_use.get(skip..).unwrap_or(&[]).to_vec();
        let mut name: Option<Vec<u8>> = None;
        let mut hops = 0;
        loop {
            let mut next = None;
            let mut at = 0usize;
            while at + 4 <= area.len() {
                let (sig, len) = (&area[at..at + 2], usize::from(area[at + 2]));
                if len < 4 || at + len > area.len() {
                    break;
                }
                let entry = &area[at..at + len];
                match sig {
                    // Flags: 0x02 current, 0x04 parent directory; no name bytes then.
                    b"NM" if len >= 5 && entry[4] & 0x06 == 0 => {
                        name.get_or_insert_with(Vec::new)
                            .extend_from_slice(&entry[5..]);
                    }
                    b"CE" if len >= 28 => {
                        let block = u64::from(le32(&entry[4..8]));
                        let offset = u64::from(le32(&entry[12..16]));
                        let length = u64::from(le32(&entry[20..24]));
                        next = Some((block * SECTOR + offset, length));
                    }
                    b"ST" => break,
                    _ => {}
                }
                at += len;
            }
            match next {
                Some((start, length)) if hops < 8 && length <= SECTOR => {
                    hops += 1;
                    area = vec![0u8; length as usize];
                    self.read_at(start, &mut area)?;
                }
                _ => break,
            }
        }
        Ok(name.map(|n| String::from_utf8_lossy(&n).into_owned()))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IsoError> {
        if offset + buf.len() as u64 > self.size {
            return Err(IsoError::Truncated {
                path: self.path.clone(),
                size: self.size,
                expected: offset + buf.len() as u64,
            });
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| IsoError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn not_iso(&self, why: String) -> IsoError {
        IsoError::NotIso {
            path: self.path.clone(),
            why,
        }
    }

    fn corrupt(&self, why: String) -> IsoError {
        IsoError::Corrupt {
            path: self.path.clone(),
            why,
        }
    }
}

fn matches(record: &Record, part: &str) -> bool {
    if record.plain {
        // ECMA-119 7.4.1 d-characters: mastering tools write what else is there as `_`
        // (`.disk` is `_DISK`); a name cut to 8.3 is not guessed.
        let (base, ext) = match part.rsplit_once('.') {
            Some((base, ext)) if !base.is_empty() => (base, Some(ext)),
            _ => (part, None),
        };
        let d = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let wanted = match ext {
            Some(ext) => format!("{}.{}", d(base), d(ext)),
            None => d(base),
        };
        record.name.eq_ignore_ascii_case(&wanted) || record.name.eq_ignore_ascii_case(part)
    } else {
        record.name == part
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// `VMLINUZ.;1` → `VMLINUZ` (ECMA-119 7.5: a version after `;`, a `.` with no extension).
fn plain_name(id: &[u8]) -> String {
    let text = String::from_utf8_lossy(id);
    let base = text.split(';').next().unwrap_or_default();
    base.trim_end_matches('.').to_string()
}

/// Joliet identifiers are UCS-2 big-endian, with the same `;1` versions.
fn joliet_name(id: &[u8]) -> String {
    let units: Vec<u16> = id
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    text.split(';').next().unwrap_or_default().to_string()
}

/// The fuzz target (`fuzz/`) and its corpus replay: an image as `seed images import` reads one,
/// from `data` written to a scratch file (the reader works on files). Must return, whatever
/// the bytes. Not an API.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "seed-fuzz-iso-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(iso) = Iso::open(&path) {
        let _ = iso.names();
        for name in [
            "casper/vmlinuz",
            "casper/initrd",
            ".disk/info",
            "boot/grub/grub.cfg",
        ] {
            if let Ok(Some(file)) = iso.find(name) {
                let _ = iso.read(&file, 1 << 16);
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_joliet_identifiers_lose_their_versions() {
        assert_eq!(plain_name(b"VMLINUZ.;1"), "VMLINUZ");
        assert_eq!(plain_name(b"INFO.;1"), "INFO");
        assert_eq!(plain_name(b"CASPER"), "CASPER");
        let joliet: Vec<u8> = "vmlinuz;1"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        assert_eq!(joliet_name(&joliet), "vmlinuz");
    }

    #[test]
    fn plain_names_match_as_mastering_tools_map_them() {
        let plain = |name: &str| Record {
            name: name.into(),
            plain: true,
            directory: false,
            extents: vec![],
        };
        assert!(matches(&plain("_DISK"), ".disk"));
        assert!(matches(&plain("VMLINUZ"), "vmlinuz"));
        assert!(matches(&plain("GRUB.CFG"), "grub.cfg"));
        assert!(!matches(&plain("HWE_VMLI"), "hwe-vmlinuz"));
        let rock_ridge = Record {
            plain: false,
            ..plain("vmlinuz")
        };
        assert!(!matches(&rock_ridge, "VMLINUZ"));
    }

    #[test]
    fn what_is_not_an_iso_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.iso");
        std::fs::write(&path, vec![0u8; 40_000]).unwrap();
        let e = Iso::open(&path).unwrap_err().to_string();
        assert!(
            e.contains("x.iso") && e.contains("not an ISO 9660 image"),
            "{e}"
        );
        std::fs::write(&path, b"short").unwrap();
        let e = Iso::open(&path).unwrap_err().to_string();
        assert!(e.contains("too short"), "{e}");
    }

    #[test]
    fn a_built_cidata_volume_reads_back_by_its_rock_ridge_names() {
        let dir = tempfile::tempdir().unwrap();
        let user = b"#cloud-config\nhostname: cmp1\n".to_vec();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let image = build::build(
            "cidata",
            &[
                ("user-data", &user),
                ("meta-data", b""),
                ("network-config", &big),
            ],
        )
        .unwrap();
        let path = dir.path().join("cidata.iso");
        std::fs::write(&path, &image).unwrap();
        let iso = Iso::open(&path).unwrap();
        assert!(matches!(iso.names(), Names::RockRidge { .. }));
        for (name, bytes) in [
            ("user-data", &user[..]),
            ("meta-data", &[][..]),
            ("network-config", &big[..]),
        ] {
            let file = iso
                .find(name)
                .unwrap()
                .unwrap_or_else(|| panic!("{name} not found"));
            assert_eq!(iso.read(&file, 1 << 20).unwrap(), bytes, "{name}");
        }
    }
}
