//! Disk images: what seed's agent writes to a node's disk (issue 21), beside the installer
//! images of [`Catalogue`](super::Catalogue).
//!
//! An image is registered once from qcow2 (what OSISM ships), raw, or raw compressed with
//! gzip, zstd, xz or bzip2 (told by the first bytes, not the name), and kept as one raw file
//! `<root>/<name>/disk.raw` (sparse where the source has zeros) with `disk.json`: the raw
//! disk's size and SHA-256, which the agent checks while it writes, and the source's. The
//! conversion happens here, once, so the agent streams plain bytes, can resume with a byte
//! range, and needs no decoder. Registration is as atomic as for installer images: a
//! staging directory, synced, renamed into place.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::qcow2::{self, Qcow2};
use super::{Catalogue, Error, check_name, hex, io_err, now, sync_dir};

/// The raw disk inside an image's directory.
pub const DISK_FILE: &str = "disk.raw";
/// The record inside an image's directory.
pub const DISK_RECORD: &str = "disk.json";

/// One registered disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskImage {
    /// Name; the directory and the URL path segment.
    pub name: String,
    /// The raw disk's file name ([`DISK_FILE`]).
    pub file: String,
    /// The disk's size in bytes: what the target disk must at least hold.
    pub size: u64,
    /// SHA-256 of the raw disk, lowercase hex.
    pub sha256: String,
    /// What it was registered from.
    pub source: Source,
    /// When (seconds since the Unix epoch).
    pub added_at: u64,
}

/// The file a disk image was registered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Its file name.
    pub name: String,
    /// Its format.
    pub format: Format,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// A source's format, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// QEMU's qcow2.
    Qcow2,
    /// gzip-compressed raw.
    Gzip,
    /// zstd-compressed raw.
    Zstd,
    /// xz-compressed raw.
    Xz,
    /// bzip2-compressed raw.
    Bzip2,
    /// Raw.
    Raw,
}

impl Format {
    /// The format of a file that starts with `magic`.
    pub fn of(magic: &[u8]) -> Self {
        if magic.starts_with(qcow2::MAGIC) {
            Self::Qcow2
        } else if magic.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Self::Xz
        } else if magic.starts_with(b"BZh") {
            Self::Bzip2
        } else {
            Self::Raw
        }
    }
}

/// The disk images directory.
#[derive(Debug, Clone)]
pub struct DiskCatalogue {
    /// The directory, with the staging and publishing of [`Catalogue`].
    dirs: Catalogue,
}

impl DiskCatalogue {
    /// The disk images in `root` (created when the first is added).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            dirs: Catalogue::new(root),
        }
    }

    /// The directory the HTTP server serves disk images from.
    pub fn root(&self) -> &Path {
        self.dirs.root()
    }

    /// The disk image `name`, if registered.
    pub fn get(&self, name: &str) -> Result<Option<DiskImage>, Error> {
        self.dirs.record(name, DISK_RECORD)
    }

    /// Every registered disk image, by name.
    pub fn list(&self) -> Result<Vec<DiskImage>, Error> {
        let mut images: Vec<DiskImage> = self.dirs.records(DISK_RECORD)?;
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// Register `source` as disk image `name`: hashed (and refused if `sha256` is given and
    /// differs), converted to raw while the raw disk is hashed, then made visible whole.
    /// `progress(what, done, total)` is called as it goes.
    pub fn add(
        &self,
        name: &str,
        source: &Path,
        sha256: Option<&str>,
        replace: bool,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<DiskImage, Error> {
        check_name(name)?;
        let file_name = super::file_name(source)?;
        let (format, size, source_sha256) = hash_source(source, progress)?;
        if let Some(expected) = sha256
            && !expected.eq_ignore_ascii_case(&source_sha256)
        {
            return Err(Error::Checksum {
                path: source.to_path_buf(),
                expected: expected.to_string(),
                actual: source_sha256,
            });
        }
        let staging = self.dirs.stage(name, replace)?;
        let result = (|| {
            let (raw_size, raw_sha256) =
                convert(source, format, &staging.join(DISK_FILE), progress)?;
            let image = DiskImage {
                name: name.to_string(),
                file: DISK_FILE.to_string(),
                size: raw_size,
                sha256: raw_sha256,
                source: Source {
                    name: file_name,
                    format,
                    size,
                    sha256: source_sha256,
                },
                added_at: now(),
            };
            super::write_record_as(&staging, DISK_RECORD, &image)?;
            Ok(image)
        })();
        match result {
            Ok(image) => {
                self.dirs.publish(&staging, name)?;
                Ok(image)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    /// Remove disk image `name`; false if there was none.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        if self.get(name)?.is_none() {
            return Ok(false);
        }
        let dir = self.root().join(name);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        sync_dir(self.root())?;
        Ok(true)
    }
}

/// The source's format, size and SHA-256, in one read.
fn hash_source(
    source: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(Format, u64, String), Error> {
    let mut file = File::open(source).map_err(io_err(source))?;
    let total = file.metadata().map_err(io_err(source))?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut format = None;
    loop {
        let n = file.read(&mut buf).map_err(io_err(source))?;
        if n == 0 {
            break;
        }
        format.get_or_insert_with(|| Format::of(&buf[..n]));
        hasher.update(&buf[..n]);
        done += n as u64;
        progress("hashing", done, total);
    }
    Ok((format.unwrap_or(Format::Raw), done, hex(&hasher.finalize())))
}

/// Writes the raw disk of `source` to `to`: all-zero blocks are skipped (the file stays
/// sparse there), every byte is hashed. Returns its size and SHA-256 once it is on disk.
fn convert(
    source: &Path,
    format: Format,
    to: &Path,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(u64, String), Error> {
    let file = File::open(source).map_err(io_err(source))?;
    let total = file.metadata().map_err(io_err(source))?.len();
    let out = File::create(to).map_err(io_err(to))?;
    let mut sink = RawSink {
        out,
        path: to.to_path_buf(),
        at: 0,
        hasher: Sha256::new(),
    };
    let damaged = |why: String| Error::Damaged {
        path: source.to_path_buf(),
        why,
    };
    match format {
        Format::Qcow2 => {
            let mut image =
                Qcow2::open(BufReader::new(file)).map_err(|e| damaged(e.to_string()))?;
            let size = image.size();
            let cluster = image.cluster_size() as u64;
            let mut buf = vec![0u8; cluster as usize];
            let zeros = vec![0u8; cluster as usize];
            for index in 0..size.div_ceil(cluster) {
                let len = cluster.min(size - index * cluster) as usize;
                let data = image
                    .read_cluster(index, &mut buf)
                    .map_err(|e| damaged(e.to_string()))?;
                sink.put(if data { &buf[..len] } else { &zeros[..len] })?;
                if index % 64 == 0 {
                    progress("converting qcow2", index * cluster, size);
                }
            }
        }
        _ => {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut decoded: Box<dyn Read> = match format {
                Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
                Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
                Format::Zstd => Box::new(
                    ruzstd::decoding::StreamingDecoder::new(reader)
                        .map_err(|e| damaged(format!("zstd: {e}")))?,
                ),
                Format::Xz => {
                    // lzma-rs decodes into a writer: the sink is one.
                    lzma_rs::xz_decompress(&mut reader, &mut sink)
                        .map_err(|e| damaged(format!("xz: {e}")))?;
                    return sink.finish();
                }
                _ => Box::new(reader),
            };
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = decoded
                    .read(&mut buf)
                    .map_err(|e| damaged(format!("{format:?}: {e}")))?;
                if n == 0 {
                    break;
                }
                sink.put(&buf[..n])?;
                progress("writing raw", sink.at, total);
            }
        }
    }
    sink.finish()
}

/// The raw disk being written: hashed, sparse over zeros.
struct RawSink {
    out: File,
    path: PathBuf,
    at: u64,
    hasher: Sha256,
}

impl RawSink {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.hasher.update(bytes);
        // Zeros are a hole: the file is extended to its size at the end.
        if bytes.iter().any(|&b| b != 0) {
            self.out
                .write_all_at(bytes, self.at)
                .map_err(io_err(&self.path))?;
        }
        self.at += bytes.len() as u64;
        Ok(())
    }

    fn finish(mut self) -> Result<(u64, String), Error> {
        self.out.set_len(self.at).map_err(io_err(&self.path))?;
        self.out
            .seek(SeekFrom::End(0))
            .map_err(io_err(&self.path))?;
        self.out.sync_all().map_err(io_err(&self.path))?;
        Ok((self.at, hex(&self.hasher.finalize())))
    }
}

impl Write for RawSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.put(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
