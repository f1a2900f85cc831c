//! The deploy ramdisk seed assembles itself: a newc cpio (gzip) holding this very binary as
//! `/init` and the kernel modules a node needs to see its disks and NICs, taken from the
//! kernel the operator registers (a distribution kernel package unpacked, or the one of the
//! imported Ubuntu ISO with its modules). No busybox, no udev, no shell: what the agent does,
//! it does itself ([`super::init`]).
//!
//! Modules are found by name under `lib/modules/<version>/` (`.ko`, `.ko.xz` or `.ko.zst`, as
//! Debian and Ubuntu ship them; stored uncompressed, which finit_module takes without the
//! kernel's decompressor), with what each `depends=` on, dependencies first, in
//! `lib/modules/order`. A module the kernel does not have as a module is either built in or
//! absent: it is listed as missing, not an error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What the ramdisk loads: storage controllers and NICs of the servers racks have, QEMU's
/// virtual ones, and efivarfs (the Secure Boot state).
pub const MODULES: &[&str] = &[
    // QEMU
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "ata_piix",
    // disks
    "sd_mod",
    "ahci",
    "nvme",
    "vmd",
    "megaraid_sas",
    "mpt3sas",
    "smartpqi",
    "hpsa",
    "aacraid",
    "xhci_pci",
    "usb_storage",
    "uas",
    // NICs
    "e1000e",
    "igb",
    "ixgbe",
    "i40e",
    "ice",
    "bnxt_en",
    "mlx5_core",
    "tg3",
    "qede",
    "be2net",
    // Entropy: the agent's HTTP client (std's hash maps) waits for the kernel's random pool,
    // which a virtual machine without RDRAND seeds only from an RNG device (measured: minutes
    // without one under QEMU's emulation). Servers' CPUs have RDRAND, which the kernel trusts.
    "virtio_rng",
    // firmware state
    "efivarfs",
];

/// Why a ramdisk could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RamdiskError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel directory has no modules.
    #[error("{}: no lib/modules/<version>/ here (unpack the kernel package with its modules)", path.display())]
    NoModules {
        /// The directory.
        path: PathBuf,
    },
    /// A module could not be decompressed.
    #[error("{}: {why}", path.display())]
    Module {
        /// The module file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RamdiskError + '_ {
    move |source| RamdiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What went into a ramdisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The kernel version whose modules it holds.
    pub version: String,
    /// Modules in load order.
    pub modules: Vec<String>,
    /// Wanted modules the kernel does not have as modules (built in, or absent).
    pub missing: Vec<String>,
    /// Bytes written.
    pub size: u64,
}

/// The modules directory under `kernel_dir` (`lib/modules/<version>` or `usr/lib/…`).
fn modules_dir(kernel_dir: &Path) -> Result<(String, PathBuf), RamdiskError> {
    for base in ["lib/modules", "usr/lib/modules"] {
        let dir = kernel_dir.join(base);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut versions: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("kernel").is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        versions.sort();
        if let Some(version) = versions.pop() {
            let path = dir.join(&version);
            return Ok((version, path));
        }
    }
    Err(RamdiskError::NoModules {
        path: kernel_dir.to_path_buf(),
    })
}

/// Every module file under `dir`, by module name (`-` written `_`, as the kernel does).
fn index(dir: &Path, found: &mut BTreeMap<String, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            index(&path, found);
            continue;
        }
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext));
        if let Some(stem) = stem {
            found.insert(stem.replace('-', "_"), path);
        }
    }
}

/// A module's bytes, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>, RamdiskError> {
    let raw = std::fs::read(path).map_err(io(path))?;
    let bad = |why: String| RamdiskError::Module {
        path: path.to_path_buf(),
        why,
    };
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut &raw[..], &mut out).map_err(|e| bad(format!("xz: {e}")))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(&raw[..])
            .map_err(|e| bad(format!("zstd: {e}")))?
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("zstd: {e}")))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("gzip: {e}")))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// The `depends=` of a module's `.modinfo` strings.
fn depends(module: &[u8]) -> Vec<String> {
    module
        .split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|deps| {
            String::from_utf8_lossy(deps)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect()
        })
        .unwrap_or_default()
}

/// Build the ramdisk at `out` from the kernel unpacked in `kernel_dir`, with `binary` as
/// `/init` and `wanted` modules (and what they depend on).
pub fn build(
    kernel_dir: &Path,
    binary: &Path,
    wanted: &[&str],
    out: &Path,
) -> Result<Built, RamdiskError> {
    let (version, dir) = modules_dir(kernel_dir)?;
    let mut files = BTreeMap::new();
    index(&dir.join("kernel"), &mut files);
    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    for name in wanted {
        if !add(name, &files, &mut seen, &mut order)? {
            missing.push(name.to_string());
        }
    }
    let mut cpio = Cpio::default();
    for d in ["dev", "proc", "sys", "run", "tmp", "lib", "lib/modules"] {
        cpio.entry(d, 0o040_755, 0, &[]);
    }
    // The kernel opens /dev/console for init before any devtmpfs is mounted.
    cpio.entry("dev/console", 0o020_600, (5 << 8) | 1, &[]);
    let init = std::fs::read(binary).map_err(io(binary))?;
    cpio.entry("init", 0o100_755, 0, &init);
    let mut list = String::new();
    for (name, bytes) in &order {
        cpio.entry(&format!("lib/modules/{name}.ko"), 0o100_644, 0, bytes);
        list.push_str(name);
        list.push('\n');
    }
    cpio.entry("lib/modules/order", 0o100_644, 0, list.as_bytes());
    let bytes = cpio.finish();
    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(&bytes).map_err(io(&tmp))?;
    let file = gz.finish().map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    let size = file.metadata().map_err(io(&tmp))?.len();
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(Built {
        version,
        modules: order.into_iter().map(|(n, _)| n).collect(),
        missing,
        size,
    })
}

/// Adds `name` after what it depends on; false if there is no such module file.
fn add(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<(String, Vec<u8>)>,
) -> Result<bool, RamdiskError> {
    if seen.contains(name) {
        return Ok(true);
    }
    let Some(path) = files.get(name) else {
        return Ok(false);
    };
    seen.insert(name.to_string());
    let bytes = module_bytes(path)?;
    for dep in depends(&bytes) {
        // A dependency that is no module is built in.
        add(&dep, files, seen, order)?;
    }
    order.push((name.to_string(), bytes));
    Ok(true)
}

/// A newc ("070701") cpio archive, as the kernel's initramfs unpacker reads it.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: u32, data: &[u8]) {
        self.inode += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime: the same inputs make the same archive
            data.len(),
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() + 1,
            0, // check
        );
        self.bytes.extend(header.as_bytes());
        self.bytes.extend(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.bytes
    }
}
