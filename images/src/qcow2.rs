//! QEMU's qcow2 format (`docs/interop/qcow2.txt` in QEMU's tree), read so that a disk image is
//! converted to raw once, when it is registered, and the agent then streams plain bytes.
//!
//! Versions 2 and 3; standard, zero and unallocated clusters (both read as zeros, there being
//! no backing file); compressed clusters in zlib's raw deflate (QEMU's default) or zstd.
//! Refused with the reason: backing files (`qemu-img convert` flattens them), encryption,
//! external data files, extended L2 entries (subclusters), the corrupt bit, unknown
//! incompatible features. Snapshots are ignored: the active L1 table is the disk.

use std::io::{self, Read, Seek, SeekFrom};

/// The magic at offset 0.
pub const MAGIC: &[u8; 4] = b"QFI\xfb";
/// QEMU refuses L1 tables over 32 MiB (`QCOW_MAX_L1_SIZE`); so does this reader.
const MAX_L1_BYTES: u64 = 32 << 20;
/// Bits 9-55 of an L1 or standard L2 entry: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;

/// Why a qcow2 image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// A feature this reader does not take.
    #[error("qcow2: {0}")]
    Unsupported(String),
    /// The file contradicts itself or ends early.
    #[error("qcow2 image is damaged: {0}")]
    Damaged(String),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Deflate,
    Zstd,
}

/// An open qcow2 image.
pub struct Qcow2<R> {
    src: R,
    file_len: u64,
    cluster_bits: u32,
    size: u64,
    l1: Vec<u64>,
    compression: Compression,
    /// The L2 table read last (host offset, entries): a conversion reads each once.
    l2: Option<(u64, Vec<u64>)>,
    compressed: Vec<u8>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

impl<R: Read + Seek> Qcow2<R> {
    /// Reads the header and the L1 table, refusing what [the module](self) says it refuses.
    pub fn open(mut src: R) -> Result<Self, Qcow2Error> {
        let file_len = src.seek(SeekFrom::End(0))?;
        src.seek(SeekFrom::Start(0))?;
        let mut header = [0u8; 112];
        let n = read_full(&mut src, &mut header)?;
        if n < 72 || &header[..4] != MAGIC {
            return Err(Qcow2Error::Damaged("no qcow2 header".into()));
        }
        let version = be32(&header, 4);
        if !(2..=3).contains(&version) {
            return Err(Qcow2Error::Unsupported(format!("version {version}")));
        }
        if be64(&header, 8) != 0 {
            return Err(Qcow2Error::Unsupported(
                "the image has a backing file; flatten it first (qemu-img convert -O qcow2 IN OUT)"
                    .into(),
            ));
        }
        let cluster_bits = be32(&header, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::Damaged(format!(
                "cluster_bits {cluster_bits} (9-21)"
            )));
        }
        let size = be64(&header, 24);
        if be32(&header, 32) != 0 {
            return Err(Qcow2Error::Unsupported("the image is encrypted".into()));
        }
        let l1_size = u64::from(be32(&header, 36));
        let l1_offset = be64(&header, 40);
        let mut compression = Compression::Deflate;
        if version == 3 {
            if n < 104 {
                return Err(Qcow2Error::Damaged("short version 3 header".into()));
            }
            let incompatible = be64(&header, 72);
            if incompatible & 0b10 != 0 {
                return Err(Qcow2Error::Damaged(
                    "QEMU marked the image corrupt (qemu-img check -r all repairs it)".into(),
                ));
            }
            if incompatible & 0b100 != 0 {
                return Err(Qcow2Error::Unsupported("an external data file".into()));
            }
            if incompatible & 0b1_0000 != 0 {
                return Err(Qcow2Error::Unsupported(
                    "extended L2 entries (subclusters); convert with qemu-img convert -O qcow2"
                        .into(),
                ));
            }
            if incompatible & !0b1_1111 != 0 {
                return Err(Qcow2Error::Unsupported(format!(
                    "incompatible features {incompatible:#x}"
                )));
            }
            let header_length = be32(&header, 100);
            if incompatible & 0b1000 != 0 && header_length > 104 && n > 104 {
                compression = match header[104] {
                    0 => Compression::Deflate,
                    1 => Compression::Zstd,
                    other => {
                        return Err(Qcow2Error::Unsupported(format!("compression type {other}")));
                    }
                };
            }
        }
        let cluster = 1u64 << cluster_bits;
        let per_l2 = cluster / 8;
        let needed = size.div_ceil(cluster).div_ceil(per_l2);
        if l1_size < needed || l1_size * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::Damaged(format!(
                "an L1 table of {l1_size} entries for a {size}-byte disk"
            )));
        }
        if !l1_offset.is_multiple_of(cluster) || l1_offset.saturating_add(l1_size * 8) > file_len {
            return Err(Qcow2Error::Damaged(format!(
                "the L1 table at {l1_offset} is outside the file"
            )));
        }
        src.seek(SeekFrom::Start(l1_offset))?;
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        src.read_exact(&mut raw)?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        Ok(Self {
            src,
            file_len,
            cluster_bits,
            size,
            l1,
            compression,
            l2: None,
            compressed: Vec::new(),
        })
    }

    /// The virtual disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> usize {
        1 << self.cluster_bits
    }

    /// Reads cluster `index` of the virtual disk into `buf` (one cluster long). `false`: the
    /// cluster reads as zeros (unallocated or a zero cluster) and `buf` is untouched.
    pub fn read_cluster(&mut self, index: u64, buf: &mut [u8]) -> Result<bool, Qcow2Error> {
        let cluster = self.cluster_size() as u64;
        let per_l2 = cluster / 8;
        let l1_entry = self.l1[(index / per_l2) as usize];
        let l2_offset = l1_entry & OFFSET_MASK;
        if l2_offset == 0 {
            return Ok(false);
        }
        if !l2_offset.is_multiple_of(cluster) || l2_offset + cluster > self.file_len {
            return Err(Qcow2Error::Damaged(format!(
                "the L2 table at {l2_offset} is outside the file"
            )));
        }
        if self.l2.as_ref().is_none_or(|(at, _)| *at != l2_offset) {
            self.src.seek(SeekFrom::Start(l2_offset))?;
            let mut raw = vec![0u8; cluster as usize];
            self.src.read_exact(&mut raw)?;
            self.l2 = Some((l2_offset, raw.chunks_exact(8).map(|c| be64(c, 0)).collect()));
        }
        let entry = self
            .l2
            .as_ref()
            .map_or(0, |(_, t)| t[(index % per_l2) as usize]);
        if entry & COMPRESSED != 0 {
            self.read_compressed(entry, buf)?;
            return Ok(true);
        }
        let offset = entry & OFFSET_MASK;
        if entry & ZERO != 0 || offset == 0 {
            return Ok(false);
        }
        if !offset.is_multiple_of(cluster) || offset >= self.file_len {
            return Err(Qcow2Error::Damaged(format!(
                "cluster {index} at {offset} is outside the file"
            )));
        }
        self.src.seek(SeekFrom::Start(offset))?;
        // A file may end inside its last cluster; QEMU reads past the end as zeros.
        let n = read_full(&mut self.src, buf)?;
        buf[n..].fill(0);
        Ok(true)
    }

    fn read_compressed(&mut self, entry: u64, buf: &mut [u8]) -> Result<(), Qcow2Error> {
        // Bits 0..x-1 the host offset, x..61 the count of further 512-byte sectors.
        let x = 62 - (self.cluster_bits - 8);
        let offset = entry & ((1u64 << x) - 1);
        let sectors = (entry >> x) & ((1u64 << (62 - x)) - 1);
        let len = ((sectors + 1) * 512 - (offset & 511)).min(self.file_len.saturating_sub(offset));
        if offset >= self.file_len || len == 0 {
            return Err(Qcow2Error::Damaged(format!(
                "a compressed cluster at {offset} is outside the file"
            )));
        }
        self.compressed.resize(len as usize, 0);
        self.src.seek(SeekFrom::Start(offset))?;
        self.src.read_exact(&mut self.compressed)?;
        let damaged =
            |e: io::Error| Qcow2Error::Damaged(format!("the compressed cluster at {offset}: {e}"));
        let n = match self.compression {
            Compression::Deflate => {
                let mut d = flate2::read::DeflateDecoder::new(&self.compressed[..]);
                read_full(&mut d, buf).map_err(damaged)?
            }
            Compression::Zstd => {
                let mut d = ruzstd::decoding::StreamingDecoder::new(&self.compressed[..])
                    .map_err(|e| Qcow2Error::Damaged(format!("zstd at {offset}: {e}")))?;
                read_full(&mut d, buf).map_err(damaged)?
            }
        };
        if n != buf.len() {
            return Err(Qcow2Error::Damaged(format!(
                "the compressed cluster at {offset} holds {n} bytes, not {}",
                buf.len()
            )));
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the source ends; how much was read.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fuzzing entry (`fuzz/fuzz_targets/qcow2.rs`, replayed by `tests/fuzz_corpora.rs`): any bytes
/// as a qcow2 image, its first 256 clusters read; errors are fine, a panic is a finding.
pub fn fuzz(data: &[u8]) {
    let Ok(mut image) = Qcow2::open(io::Cursor::new(data)) else {
        return;
    };
    let cluster = image.cluster_size();
    let mut buf = vec![0u8; cluster];
    let clusters = image.size().div_ceil(cluster as u64);
    for index in (0..clusters).take(256) {
        let _ = image.read_cluster(index, &mut buf);
    }
}
