//! The image catalogue: what a node installs from.
//!
//! An image is a directory `<root>/<name>/` holding its files (kernel, initrd, optionally the
//! live-server ISO casper loads) and `image.json`, the record that names them with their sizes and
//! SHA-256. The HTTP server serves the directory as `/images/<name>/<file>`; nothing else is
//! needed to boot from it. `seed images add` registers one from files; `seed images import` from
//! Ubuntu's live-server ISO ([`Catalogue::import`]: kernel and initrd read out of it by
//! [`iso9660`], no mount, no root).
//!
//! An image appears whole or not at all: its files are copied into a hidden directory next to
//! the catalogue, synced, and renamed into place, so a crash mid-copy leaves no half image that a
//! node could boot.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod disks;
pub mod iso9660;
pub mod qcow2;

use iso9660::{Iso, IsoError};

/// The record of one image, stored as `image.json` in its directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Name; the directory and the URL path segment.
    pub name: String,
    /// File name of the installer kernel.
    pub kernel: String,
    /// File name of the installer initrd. iPXE names the download after it, and EFI-stub kernels
    /// find the initrd by that name (`initrd=<name>`).
    pub initrd: String,
    /// File name of the live-server ISO casper loads (`url=`), if the image has one.
    pub iso: Option<String>,
    /// Extra installer kernel arguments.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Every file with its size and SHA-256.
    pub files: Vec<ImageFile>,
    /// When it was added (seconds since the Unix epoch).
    pub added_at: u64,
    /// The release, from the ISO's `.disk/info` (`24.04.1`); none for images added from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// The architecture, from `.disk/info` (`amd64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `.disk/info` as the ISO has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Image {
    /// Bytes on disk (its files).
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// One file of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// File name inside the image directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// What an operator registers.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Image name.
    pub name: String,
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The installer initrd.
    pub initrd: PathBuf,
    /// The live-server ISO, if casper should load one.
    pub iso: Option<PathBuf>,
    /// Extra installer kernel arguments.
    pub kernel_args: Vec<String>,
}

/// An ISO to import.
pub struct Import<'a> {
    /// The live-server ISO.
    pub iso: PathBuf,
    /// The image name; default `ubuntu-<major.minor>` from `.disk/info` (with `-<arch>` when
    /// not amd64).
    pub name: Option<String>,
    /// The SHA-256 the ISO must have (lowercase hex); refused if it differs.
    pub sha256: Option<String>,
    /// Extra installer kernel arguments.
    pub kernel_args: Vec<String>,
    /// Replace an image of the same name.
    pub replace: bool,
    /// Called as work proceeds: what (`hashing and copying ubuntu.iso`), bytes done, total.
    pub progress: &'a mut dyn FnMut(&str, u64, u64),
}

/// Where casper's kernel and initrd are on Ubuntu's live-server ISOs; the HWE pair where the
/// ISO has one (e.g. 22.04.x point releases). Extracted under the second name.
const CASPER: [(&str, &str, bool); 4] = [
    ("casper/vmlinuz", "vmlinuz", true),
    ("casper/initrd", "initrd", true),
    ("casper/hwe-vmlinuz", "hwe-vmlinuz", false),
    ("casper/hwe-initrd", "hwe-initrd", false),
];

/// Why the catalogue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name cannot be a directory and URL segment.
    #[error(
        "image name `{0}` must be 1-64 characters of a-z, A-Z, 0-9, `.`, `_` or `-`, not starting with `.` or `-`"
    )]
    BadName(String),
    /// A kernel argument would break the iPXE script or the kernel command line.
    #[error(
        "kernel argument `{0}` must be one word of printable ASCII without `$`, quotes or `\\`"
    )]
    BadArgument(String),
    /// Two of the image's files have the same name.
    #[error("the image's files must have different names; `{0}` is given twice")]
    SameFileName(String),
    /// An image of that name exists and replacing was not asked for.
    #[error("image {0} exists (replace it with --replace)")]
    Exists(String),
    /// No image of that name.
    #[error("no image named {0}")]
    Unknown(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The ISO could not be read.
    #[error(transparent)]
    Iso(#[from] IsoError),
    /// The ISO is not what it should be.
    #[error(
        "{}: SHA-256 is {actual}, not the expected {expected}: refused, nothing registered",
        path.display()
    )]
    Checksum {
        /// The ISO.
        path: PathBuf,
        /// What was expected.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// The ISO has no casper kernel and initrd.
    #[error("{}: {why}", path.display())]
    NotLiveServer {
        /// The ISO.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// A disk image's source cannot be decoded (a damaged qcow2, a truncated archive) or
    /// uses what is not supported (a qcow2 backing file, encryption).
    #[error("{}: {why}", path.display())]
    Damaged {
        /// The source.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// `image.json` is not a record.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The record file inside an image directory.
pub const RECORD: &str = "image.json";

/// Whether `name` can name an image.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// Kernel arguments go into an iPXE `kernel` line unquoted: one word each, nothing iPXE expands.
fn check_argument(arg: &str) -> Result<(), Error> {
    let ok = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '$' | '"' | '\'' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadArgument(arg.to_string()))
    }
}

/// The images directory.
#[derive(Debug, Clone)]
pub struct Catalogue {
    root: PathBuf,
}

impl Catalogue {
    /// The catalogue in `root` (created when the first image is added).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory the HTTP server serves as `/images/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image `name`, if it is registered.
    pub fn get(&self, name: &str) -> Result<Option<Image>, Error> {
        self.record(name, RECORD)
    }

    /// Every registered image, by name. Directories without a record (an import that never
    /// finished, a stray directory) are not images.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let mut images: Vec<Image> = self.records(RECORD)?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// The record `file` of the directory `name`, if there is one.
    fn record<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        file: &str,
    ) -> Result<Option<T>, Error> {
        check_name(name)?;
        let path = self.root.join(name).join(file);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| Error::Record { path, source })
    }

    /// The record `file` of every directory that has one.
    fn records<T: serde::de::DeserializeOwned>(&self, file: &str) -> Result<Vec<T>, Error> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| check_name(n).is_ok()) else {
                continue;
            };
            if let Some(record) = self.record(name, file)? {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Register an image from files: copy them in, hash them, write the record, and only then
    /// make the image visible. `replace` swaps an existing image of that name.
    pub fn add(&self, new: &NewImage, replace: bool) -> Result<Image, Error> {
        check_name(&new.name)?;
        for arg in &new.kernel_args {
            check_argument(arg)?;
        }
        let mut sources = vec![&new.kernel, &new.initrd];
        sources.extend(new.iso.as_ref());
        let names: Vec<String> = sources
            .iter()
            .map(|p| file_name(p))
            .collect::<Result<_, _>>()?;
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::SameFileName(name.clone()));
            }
        }
        let staging = self.stage(&new.name, replace)?;
        let image = match self.fill(new, &sources, &names, &staging) {
            Ok(image) => image,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        self.publish(&staging, &new.name)?;
        Ok(image)
    }

    /// Imports Ubuntu's live-server ISO: the ISO is copied in and hashed in one pass (refused,
    /// and nothing registered, when `sha256` is given and differs), casper's kernel and initrd
    /// are read out of it, and the image appears whole once everything is on disk.
    pub fn import(&self, import: Import<'_>) -> Result<Image, Error> {
        for arg in &import.kernel_args {
            check_argument(arg)?;
        }
        let iso = Iso::open(&import.iso)?;
        let label = match iso.find(".disk/info")? {
            Some(info) => Some(
                String::from_utf8_lossy(&iso.read(&info, 4096)?)
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let (release, arch) = label.as_deref().map(parse_disk_info).unwrap_or_default();
        let name = match (&import.name, &release) {
            (Some(name), _) => name.clone(),
            (None, Some(release)) => default_name(release, arch.as_deref()),
            (None, None) => {
                return Err(Error::NotLiveServer {
                    path: import.iso.clone(),
                    why: "no .disk/info to name the image after: give --name".into(),
                });
            }
        };
        check_name(&name)?;
        let mut found = Vec::new();
        for (inside, as_name, required) in CASPER {
            match iso.find(inside)? {
                Some(file) => found.push((file, as_name)),
                None if required => {
                    return Err(Error::NotLiveServer {
                        path: import.iso.clone(),
                        why: format!("no {inside}: not an Ubuntu live-server ISO"),
                    });
                }
                None => {}
            }
        }
        let iso_name = file_name(&import.iso).unwrap_or_else(|_| "live-server.iso".into());
        let staging = self.stage(&name, import.replace)?;
        let progress = import.progress;
        let result = (|| {
            let what = format!("hashing and copying {iso_name}");
            let (size, sha256) =
                copy_hashed_with(&import.iso, &staging.join(&iso_name), &mut |done, total| {
                    progress(&what, done, total)
                })?;
            if let Some(expected) = &import.sha256
                && !expected.eq_ignore_ascii_case(&sha256)
            {
                return Err(Error::Checksum {
                    path: import.iso.clone(),
                    expected: expected.to_ascii_lowercase(),
                    actual: sha256,
                });
            }
            let mut files = Vec::new();
            for (file, as_name) in &found {
                let what = format!("extracting {}", file.path);
                let target = staging.join(as_name);
                let mut out = HashingWriter::create(&target)?;
                iso.copy(file, &mut out, &mut |done| progress(&what, done, file.size))?;
                files.push(out.finish(as_name)?);
            }
            files.push(ImageFile {
                name: iso_name.clone(),
                size,
                sha256,
            });
            let image = Image {
                name: name.clone(),
                kernel: "vmlinuz".into(),
                initrd: "initrd".into(),
                iso: Some(iso_name.clone()),
                kernel_args: import.kernel_args.clone(),
                files,
                added_at: now(),
                release: release.clone(),
                arch: arch.clone(),
                label: label.clone(),
            };
            write_record(&staging, &image)?;
            Ok(image)
        })();
        let image = match result {
            Ok(image) => image,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        self.publish(&staging, &name)?;
        Ok(image)
    }

    /// Removes image `name`; false when there is none. The directory is renamed away first,
    /// so the image disappears at once, whole.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        let dir = self.root.join(name);
        if !dir.join(RECORD).exists() {
            return Ok(false);
        }
        let old = self
            .root
            .join(format!(".old-{name}-{}", std::process::id()));
        fs::rename(&dir, &old).map_err(io_err(&dir))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
        Ok(true)
    }

    /// A fresh hidden staging directory for image `name`; refuses an existing image unless
    /// `replace`. Staging left by a process that died (a crash, a kill mid-import) is removed.
    fn stage(&self, name: &str, replace: bool) -> Result<PathBuf, Error> {
        if !replace && self.root.join(name).exists() {
            return Err(Error::Exists(name.to_string()));
        }
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        self.remove_stale()?;
        let staging = self
            .root
            .join(format!(".new-{name}-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
        }
        fs::create_dir(&staging).map_err(io_err(&staging))?;
        Ok(staging)
    }

    /// Moves a finished staging directory into place as image `name` (replacing an old one).
    fn publish(&self, staging: &Path, name: &str) -> Result<(), Error> {
        let dest = self.root.join(name);
        if dest.exists() {
            // Move the old one aside first: rename cannot replace a non-empty directory.
            let old = self
                .root
                .join(format!(".old-{name}-{}", std::process::id()));
            fs::rename(&dest, &old).map_err(io_err(&dest))?;
            fs::rename(staging, &dest).map_err(io_err(&dest))?;
            fs::remove_dir_all(&old).map_err(io_err(&old))?;
        } else {
            fs::rename(staging, &dest).map_err(io_err(&dest))?;
        }
        sync_dir(&self.root)
    }

    /// `.new-*`/`.old-*` directories whose process is gone.
    fn remove_stale(&self) -> Result<(), Error> {
        let entries = fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(".new-") || name.starts_with(".old-")) {
                continue;
            }
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// Bytes under the catalogue, images and leftovers alike.
    pub fn disk_usage(&self) -> u64 {
        disk_usage(&self.root)
    }

    fn fill(
        &self,
        new: &NewImage,
        sources: &[&PathBuf],
        names: &[String],
        staging: &Path,
    ) -> Result<Image, Error> {
        let mut files = Vec::new();
        for (source, name) in sources.iter().zip(names) {
            let (size, sha256) = copy_hashed(source, &staging.join(name))?;
            files.push(ImageFile {
                name: name.clone(),
                size,
                sha256,
            });
        }
        let image = Image {
            name: new.name.clone(),
            kernel: names[0].clone(),
            initrd: names[1].clone(),
            iso: names.get(2).cloned(),
            kernel_args: new.kernel_args.clone(),
            files,
            added_at: now(),
            release: None,
            arch: None,
            label: None,
        };
        write_record(staging, &image)?;
        Ok(image)
    }
}

/// Bytes in the files under `dir` (0 when it does not exist).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `image.json` into `dir` and syncs it and the directory.
fn write_record(dir: &Path, image: &Image) -> Result<(), Error> {
    write_record_as(dir, RECORD, image)
}

/// `value` as the JSON record `file` in `dir`, on disk (file and directory synced).
fn write_record_as<T: Serialize>(dir: &Path, file: &str, image: &T) -> Result<(), Error> {
    let record = dir.join(file);
    let mut text = serde_json::to_vec_pretty(image).map_err(|source| Error::Record {
        path: record.clone(),
        source,
    })?;
    text.push(b'\n');
    let mut file = File::create(&record).map_err(io_err(&record))?;
    file.write_all(&text).map_err(io_err(&record))?;
    file.sync_all().map_err(io_err(&record))?;
    sync_dir(dir)
}

/// `Ubuntu-Server 24.04.1 LTS "Noble Numbat" - Release amd64 (20240827)` → (`24.04.1`,
/// `amd64`).
pub fn parse_disk_info(info: &str) -> (Option<String>, Option<String>) {
    const ARCHES: [&str; 7] = [
        "amd64", "arm64", "ppc64el", "s390x", "riscv64", "armhf", "i386",
    ];
    let words: Vec<&str> = info.split_whitespace().collect();
    let release = words
        .iter()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|w| w.to_string());
    let arch = words
        .iter()
        .find(|w| ARCHES.contains(w))
        .map(|w| w.to_string());
    (release, arch)
}

/// The name an import of `iso` gets without `--name`: from its `.disk/info`.
pub fn default_name_of(iso: &Path) -> Result<Option<String>, Error> {
    let iso = Iso::open(iso)?;
    let Some(info) = iso.find(".disk/info")? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&iso.read(&info, 4096)?).into_owned();
    Ok(match parse_disk_info(text.trim()) {
        (Some(release), arch) => Some(default_name(&release, arch.as_deref())),
        (None, _) => None,
    })
}

/// `ubuntu-24.04` for `24.04.1` on amd64 (what nodes install by default), `ubuntu-24.04-arm64`
/// elsewhere.
fn default_name(release: &str, arch: Option<&str>) -> String {
    let short: Vec<&str> = release.split('.').take(2).collect();
    match arch {
        Some(arch) if arch != "amd64" => format!("ubuntu-{}-{arch}", short.join(".")),
        _ => format!("ubuntu-{}", short.join(".")),
    }
}

/// The SHA-256 a `SHA256SUMS` file gives for `file` (`<hex> *<name>` or `<hex>  <name>`).
pub fn sha256_from_sums(sums: &str, file: &str) -> Option<String> {
    sums.lines().find_map(|line| {
        let (hex, name) = line.split_once(' ')?;
        let name = name.trim_start_matches([' ', '*']);
        (name == file && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_lowercase())
    })
}

/// A file being written and hashed; synced by [`HashingWriter::finish`].
struct HashingWriter {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
}

impl HashingWriter {
    fn create(path: &Path) -> Result<Self, Error> {
        Ok(Self {
            file: File::create(path).map_err(io_err(path))?,
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    fn finish(self, name: &str) -> Result<ImageFile, Error> {
        self.file.sync_all().map_err(io_err(&self.path))?;
        Ok(ImageFile {
            name: name.to_string(),
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_name(path: &Path) -> Result<String, Error> {
    path.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| check_name(n).is_ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the file name must be a plain name (a-z, A-Z, 0-9, `.`, `_`, `-`): it becomes part of the boot URL",
            ),
        })
}

/// Copy `from` to `to`, hashing on the way; returns the size and SHA-256 once `to` is on disk.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), Error> {
    copy_hashed_with(from, to, &mut |_, _| {})
}

/// The same, calling `progress(done, total)` after every MiB.
fn copy_hashed_with(
    from: &Path,
    to: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(u64, String), Error> {
    let mut input = File::open(from).map_err(io_err(from))?;
    let total = input.metadata().map_err(io_err(from))?.len();
    let mut output = HashingWriter::create(to)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf).map_err(io_err(from))?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(io_err(to))?;
        progress(output.size, total);
    }
    let file = output.finish("")?;
    Ok((file.size, file.sha256))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> NewImage {
        fs::write(dir.join("vmlinuz"), b"kernel").unwrap();
        fs::write(dir.join("initrd"), b"initrd").unwrap();
        NewImage {
            name: "noble".into(),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd"),
            iso: None,
            kernel_args: vec!["quiet".into()],
        }
    }

    #[test]
    fn an_added_image_is_listed_with_its_hashes() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path().join("images"));
        assert_eq!(catalogue.list().unwrap(), vec![]);
        let image = catalogue.add(&files(src.path()), false).unwrap();
        assert_eq!(image.kernel, "vmlinuz");
        assert_eq!(image.initrd, "initrd");
        // `printf kernel | sha256sum`
        assert_eq!(
            image.files[0].sha256,
            "6923dd1bc0460082c5d55a831908c24a282860b7f1cd6c2b79cf1bc8857c639c"
        );
        assert_eq!(image.files[0].size, 6);
        assert_eq!(catalogue.get("noble").unwrap(), Some(image.clone()));
        assert_eq!(catalogue.list().unwrap(), vec![image]);
        assert_eq!(
            fs::read(root.path().join("images/noble/initrd")).unwrap(),
            b"initrd"
        );
    }

    #[test]
    fn an_image_is_replaced_only_when_asked() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path());
        let new = files(src.path());
        catalogue.add(&new, false).unwrap();
        assert!(matches!(catalogue.add(&new, false), Err(Error::Exists(_))));
        fs::write(src.path().join("initrd"), b"initrd 2").unwrap();
        let image = catalogue.add(&new, true).unwrap();
        assert_eq!(image.files[1].size, 8);
        assert_eq!(
            fs::read(root.path().join("noble/initrd")).unwrap(),
            b"initrd 2"
        );
        // Nothing is left behind from staging or the old copy.
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["noble"]);
    }

    #[test]
    fn a_failed_add_leaves_no_image() {
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::new(root.path());
        let mut new = files(src.path());
        new.iso = Some(src.path().join("missing.iso"));
        let err = catalogue.add(&new, false).unwrap_err().to_string();
        assert!(err.contains("missing.iso"), "{err}");
        assert_eq!(catalogue.list().unwrap(), vec![]);
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn names_and_arguments_that_would_break_urls_or_scripts_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", "ü"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("ubuntu-24.04_live").unwrap();
        let src = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut new = files(src.path());
        new.kernel_args = vec!["a=${x}".into()];
        assert!(matches!(
            Catalogue::new(root.path()).add(&new, false),
            Err(Error::BadArgument(_))
        ));
        new.kernel_args = vec![];
        new.initrd = new.kernel.clone();
        assert!(matches!(
            Catalogue::new(root.path()).add(&new, false),
            Err(Error::SameFileName(_))
        ));
    }
}
