//! A machine's hardware as its kernel shows it (`/sys`, `/proc`): firmware mode and Secure
//! Boot, DMI identity, CPU, memory, NICs and disks, with each disk named as udev names it.
//!
//! udev derives a disk's names in builtins and rules (systemd 255, Ubuntu 24.04's): `ata_id`
//! (IDENTIFY DEVICE), `scsi_id` (VPD pages 0x80 and 0x83), `usb_id`, the NVMe rules of
//! `60-persistent-storage.rules` and `path_id`. The agent reads the same facts from sysfs:
//! libata's SCSI translation exposes IDENTIFY DEVICE as VPD page 0x89 (`vpd_pg89`), and the
//! SCSI layer keeps VPD 0x80/0x83 (`vpd_pg80`, `vpd_pg83`), so nothing needs an ioctl.
//! Devices are told apart by their sysfs names (`ata3`, `host0`, `0:0:1:0`, `end_device-0:2`,
//! `1-1.4:1.0`, `0000:3b:00.0`), which the kernel fixes, as `path_id` tells them apart by
//! subsystem. Not modelled: SATA port multipliers, iSCSI, Fibre Channel, NVMe over fabrics
//! (their disks get an `ID_PATH` without those parts).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::disk::UdevDisk;
use crate::net::MacAddr;

/// The most read of one kernel file: an attribute is a page; VPD pages and `/proc/cpuinfo`
/// of a many-core machine are longer.
const FILE_LIMIT: u64 = 1 << 20;
/// The most entries taken from one directory.
const LIST_LIMIT: usize = 4096;
/// The EFI variable that holds the Secure Boot state (UEFI 2.x, global variable GUID).
const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// What the agent found on a machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    /// How the machine booted.
    pub firmware: Firmware,
    /// DMI (SMBIOS) identity.
    pub system: System,
    /// Processors.
    pub cpu: Cpu,
    /// Memory the kernel sees (`MemTotal`), in bytes.
    pub memory_bytes: Option<u64>,
    /// Physical NICs (those with a device behind them), by kernel name.
    pub nics: Vec<Nic>,
    /// Disks, by kernel name.
    pub disks: Vec<Disk>,
}

/// The firmware's boot mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    /// Legacy BIOS (or CSM): no `/sys/firmware/efi`.
    #[default]
    Bios,
    /// UEFI.
    Uefi,
}

/// Firmware facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmware {
    /// Boot mode.
    pub mode: BootMode,
    /// Secure Boot enforced; `None` on BIOS or where the variable is unreadable.
    pub secure_boot: Option<bool>,
}

/// DMI identity (`/sys/class/dmi/id`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct System {
    /// `sys_vendor` (`Dell Inc.`).
    pub vendor: Option<String>,
    /// `product_name` (`PowerEdge R650`).
    pub product: Option<String>,
    /// `product_serial` (the service tag).
    pub serial: Option<String>,
    /// `product_uuid`, in lower case.
    pub uuid: Option<String>,
    /// `bios_version`.
    pub bios_version: Option<String>,
}

/// Processors (`/proc/cpuinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// The first processor's `model name`.
    pub model: Option<String>,
    /// Logical processors.
    pub threads: u32,
    /// Distinct `physical id`s (1 where the kernel gives none).
    pub sockets: u32,
}

/// One physical NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// The kernel's name in the ramdisk (`eth0`: no udev renames it there).
    pub name: String,
    /// Its permanent MAC (a bond member's `perm_hwaddr`, else `address`).
    pub mac: MacAddr,
    /// The driver (`bnxt_en`, `ice`, `mlx5_core`, `virtio_net`).
    pub driver: Option<String>,
    /// The PCI address of its function (`0000:31:00.0`; for virtio, the virtio device's).
    pub pci: Option<String>,
    /// Carrier: `None` while the interface is down (the kernel then refuses to say).
    pub link: Option<bool>,
    /// Negotiated speed in Mb/s, where there is a link.
    pub speed_mbps: Option<u32>,
}

/// One disk, named as udev names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// `/dev/<kernel name>`.
    pub path: String,
    /// `ID_SERIAL`.
    pub id_serial: String,
    /// `ID_MODEL`.
    pub id_model: String,
    /// `ID_VENDOR` (empty for ATA, NVMe and virtio, as udev leaves it).
    pub id_vendor: String,
    /// `ID_PATH` (what `/dev/disk/by-path/` links carry).
    pub id_path: String,
    /// `ID_WWN` (`0x5000c500…`, NVMe's `eui.…`), empty where the disk has none.
    pub id_wwn: String,
    /// The serial on the label (`ID_SERIAL_SHORT`, or `ID_SCSI_SERIAL` for SCSI).
    pub serial: String,
    /// Bytes.
    pub size: u64,
    /// `queue/rotational`.
    pub rotational: bool,
    /// `removable`.
    pub removable: bool,
}

impl Disk {
    /// The facts the disk rules match ([`crate::disk::candidates`]).
    pub fn udev(&self) -> UdevDisk {
        UdevDisk {
            path: self.path.clone(),
            id_serial: self.id_serial.clone(),
            id_model: self.id_model.clone(),
            id_vendor: self.id_vendor.clone(),
            id_path: self.id_path.clone(),
            size: self.size,
            rotational: self.rotational,
        }
    }
}

/// The most NICs an inspection may list: machines have tens, even with every virtual
/// function of a NIC shown; a report with more is not a machine's.
pub const MAX_NICS: usize = 256;
/// The most disks an inspection may list (a JBOD head has a few hundred).
pub const MAX_DISKS: usize = 1024;
/// The longest text in an inspection (udev's names and DMI strings are far shorter).
pub const MAX_TEXT: usize = 256;
/// The largest enlistment an unknown machine may post (`POST /enlist/<mac>`): a server with a
/// few tens of disks and NICs reports some 30 KiB; seed keeps up to
/// [`crate::store::MAX_ENLISTED`] of them for strangers, so they are held to less than a
/// node's report.
pub const MAX_ENLIST_BYTES: usize = 256 * 1024;

impl Inspection {
    /// Whether a report that came over the network stays within [`MAX_NICS`], [`MAX_DISKS`]
    /// and [`MAX_TEXT`]; the problem names the field.
    pub fn check(&self) -> Result<(), String> {
        if self.nics.len() > MAX_NICS {
            return Err(format!(
                "nics: {} listed, at most {MAX_NICS}",
                self.nics.len()
            ));
        }
        if self.disks.len() > MAX_DISKS {
            return Err(format!(
                "disks: {} listed, at most {MAX_DISKS}",
                self.disks.len()
            ));
        }
        let mut texts: Vec<(String, &str)> = Vec::new();
        let system = &self.system;
        for (name, value) in [
            ("system.vendor", &system.vendor),
            ("system.product", &system.product),
            ("system.serial", &system.serial),
            ("system.uuid", &system.uuid),
            ("system.bios_version", &system.bios_version),
            ("cpu.model", &self.cpu.model),
        ] {
            if let Some(v) = value {
                texts.push((name.to_string(), v));
            }
        }
        for (i, nic) in self.nics.iter().enumerate() {
            texts.push((format!("nics[{i}].name"), &nic.name));
            for (name, value) in [("driver", &nic.driver), ("pci", &nic.pci)] {
                if let Some(v) = value {
                    texts.push((format!("nics[{i}].{name}"), v));
                }
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            for (name, value) in [
                ("path", &d.path),
                ("id_serial", &d.id_serial),
                ("id_model", &d.id_model),
                ("id_vendor", &d.id_vendor),
                ("id_path", &d.id_path),
                ("id_wwn", &d.id_wwn),
                ("serial", &d.serial),
            ] {
                texts.push((format!("disks[{i}].{name}"), value));
            }
        }
        match texts.into_iter().find(|(_, v)| v.len() > MAX_TEXT) {
            Some((field, v)) => Err(format!("{field}: {} bytes, at most {MAX_TEXT}", v.len())),
            None => Ok(()),
        }
    }

    /// One line for an event and `seed status`: identity, firmware, size, counts.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let s = &self.system;
        let name: Vec<&str> = [&s.vendor, &s.product]
            .into_iter()
            .filter_map(|v| v.as_deref())
            .collect();
        if !name.is_empty() {
            parts.push(name.join(" "));
        }
        if let Some(serial) = &s.serial {
            parts.push(format!("serial {serial}"));
        }
        parts.push(match (self.firmware.mode, self.firmware.secure_boot) {
            (BootMode::Bios, _) => "BIOS".to_string(),
            (BootMode::Uefi, Some(true)) => "UEFI, Secure Boot on".to_string(),
            (BootMode::Uefi, Some(false)) => "UEFI, Secure Boot off".to_string(),
            (BootMode::Uefi, None) => "UEFI".to_string(),
        });
        if self.cpu.threads > 0 {
            parts.push(format!(
                "{} socket(s), {} threads",
                self.cpu.sockets, self.cpu.threads
            ));
        }
        if let Some(bytes) = self.memory_bytes {
            parts.push(format!("{} GiB", bytes >> 30));
        }
        parts.push(format!(
            "{} NIC(s), {} disk(s)",
            self.nics.len(),
            self.disks.len()
        ));
        parts.join(", ")
    }
}

/// Inspect the machine whose `/sys` and `/proc` are under `root` (`/` on the node).
pub fn inspect(root: &Path) -> Inspection {
    let sys = root.join("sys");
    let proc = root.join("proc");
    Inspection {
        firmware: firmware(&sys),
        system: system(&sys),
        cpu: cpu(&proc),
        memory_bytes: memory(&proc),
        nics: nics(&sys),
        disks: disks(&sys),
    }
}

fn read_limited(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(FILE_LIMIT).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// A sysfs attribute as text, without the padding and newline around it; `None` if absent,
/// unreadable or blank.
fn attr(path: &Path) -> Option<String> {
    let bytes = read_limited(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// The names in `dir`, sorted, at most [`LIST_LIMIT`].
fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .take(LIST_LIMIT)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort_by_key(|n| natural(n));
    names
}

/// A sort key that puts `sdb` before `sdaa` and `nvme2n1` before `nvme10n1`, as the kernel
/// assigns them.
fn natural(name: &str) -> (usize, String) {
    (name.len(), name.to_string())
}

fn firmware(sys: &Path) -> Firmware {
    let efi = sys.join("firmware/efi");
    if !efi.is_dir() {
        return Firmware::default();
    }
    // efivarfs: 4 bytes of attributes, then the value (1: enforcing).
    let secure_boot = read_limited(&efi.join("efivars").join(SECURE_BOOT_VAR))
        .and_then(|v| v.get(4).copied())
        .map(|b| b == 1);
    Firmware {
        mode: BootMode::Uefi,
        secure_boot,
    }
}

fn system(sys: &Path) -> System {
    let dmi = sys.join("class/dmi/id");
    let get = |name: &str| attr(&dmi.join(name));
    System {
        vendor: get("sys_vendor"),
        product: get("product_name"),
        serial: get("product_serial"),
        uuid: get("product_uuid").map(|u| u.to_ascii_lowercase()),
        bios_version: get("bios_version"),
    }
}

fn cpu(proc: &Path) -> Cpu {
    let Some(text) = read_limited(&proc.join("cpuinfo")) else {
        return Cpu::default();
    };
    let text = String::from_utf8_lossy(&text);
    let mut cpu = Cpu::default();
    let mut sockets = BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "processor" => cpu.threads += 1,
            "model name" if cpu.model.is_none() && !value.is_empty() => {
                cpu.model = Some(value.to_string())
            }
            "physical id" => {
                sockets.insert(value.to_string());
            }
            _ => {}
        }
    }
    cpu.sockets = match sockets.len() {
        0 if cpu.threads > 0 => 1,
        n => u32::try_from(n).unwrap_or(u32::MAX),
    };
    cpu
}

fn memory(proc: &Path) -> Option<u64> {
    let text = read_limited(&proc.join("meminfo"))?;
    let text = String::from_utf8_lossy(&text);
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn nics(sys: &Path) -> Vec<Nic> {
    let class = sys.join("class/net");
    listing(&class)
        .into_iter()
        .filter_map(|name| {
            let dir = class.join(&name);
            // Bonds, bridges, VLANs, veths and lo have no device behind them.
            let device = std::fs::canonicalize(dir.join("device")).ok()?;
            let mac = attr(&dir.join("bonding_slave/perm_hwaddr"))
                .or_else(|| attr(&dir.join("address")))
                .and_then(|m| MacAddr::from_reported(&m))?;
            let driver = std::fs::canonicalize(device.join("driver"))
                .ok()
                .and_then(|d| d.file_name()?.to_str().map(str::to_string));
            // The PCI function itself, or the one above a virtio device (`virtio0`).
            let pci = device
                .ancestors()
                .filter_map(|p| p.file_name()?.to_str())
                .find(|n| is_pci(n))
                .map(str::to_string);
            let link = attr(&dir.join("carrier")).map(|c| c == "1");
            let speed_mbps = attr(&dir.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| u32::try_from(s).ok())
                .filter(|&s| s > 0 && link == Some(true));
            Some(Nic {
                name,
                mac,
                driver,
                pci,
                link,
                speed_mbps,
            })
        })
        .collect()
}

/// Block devices that are no disk to install to or to wipe.
fn is_disk_name(name: &str) -> bool {
    const NOT_DISKS: &[&str] = &[
        "loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd", "zd", "rbd", "drbd",
    ];
    !NOT_DISKS.iter().any(|p| name.starts_with(p))
        && !(name.starts_with("mmcblk") && (name.contains("boot") || name.contains("rpmb")))
}

fn disks(sys: &Path) -> Vec<Disk> {
    let block = sys.join("block");
    listing(&block)
        .into_iter()
        .filter(|name| is_disk_name(name))
        // The per-path node of a multipath NVMe namespace (`nvme0c0n1`) is hidden: the
        // namespace's disk is `nvme0n1`.
        .filter(|name| attr(&block.join(name).join("hidden")).as_deref() != Some("1"))
        .filter_map(|name| disk(sys, &block.join(&name), &name))
        .collect()
}

/// The device directories from the top of `/sys/devices` down to `dir`'s parent device.
struct Chain {
    devices: PathBuf,
    names: Vec<String>,
}

impl Chain {
    /// The chain of the device directory `real` (canonical), if it is under `devices`.
    fn of(devices: &Path, real: &Path) -> Option<Self> {
        let rest = real.strip_prefix(devices).ok()?;
        let names = rest
            .components()
            .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
            .collect();
        Some(Self {
            devices: devices.to_path_buf(),
            names,
        })
    }

    /// The directory of the `i`th device.
    fn dir(&self, i: usize) -> PathBuf {
        let mut dir = self.devices.clone();
        for name in &self.names[..=i] {
            dir.push(name);
        }
        dir
    }

    /// The nearest device whose name `is`.
    fn nearest(&self, is: impl Fn(&str) -> bool) -> Option<usize> {
        self.names.iter().rposition(|n| is(n))
    }
}

fn disk(sys: &Path, dir: &Path, name: &str) -> Option<Disk> {
    let devices = std::fs::canonicalize(sys.join("devices")).ok()?;
    let real = std::fs::canonicalize(dir).ok()?;
    let mut chain = Chain::of(&devices, &real)?;
    // The block device and its `block/` directory are not part of the path.
    chain.names.pop();
    if chain.names.last().is_some_and(|n| n == "block") {
        chain.names.pop();
    }
    let sectors: u64 = attr(&dir.join("size"))?.parse().ok()?;
    let mut disk = Disk {
        path: format!("/dev/{name}"),
        size: sectors.saturating_mul(512),
        rotational: attr(&dir.join("queue/rotational")).as_deref() == Some("1"),
        removable: attr(&dir.join("removable")).as_deref() == Some("1"),
        ..Disk::default()
    };
    let mut nsid = None;
    if name.starts_with("nvme") {
        nsid = attr(&dir.join("nsid"));
        // Native NVMe multipath (Ubuntu's default) puts the namespace under
        // `virtual/nvme-subsystem/nvme-subsysN`; its path is its first controller's.
        if chain.names.iter().any(|n| n == "nvme-subsystem") {
            let subsys = chain.dir(chain.names.len() - 1);
            let first = listing(&subsys).into_iter().find(|n| is_nvme_controller(n));
            if let Some(real) = first.and_then(|c| std::fs::canonicalize(subsys.join(c)).ok()) {
                chain = Chain::of(&devices, &real)?;
            }
        }
        nvme_identity(
            &mut disk,
            dir,
            &subsystem_or_controller(&chain),
            nsid.as_deref(),
        );
    } else if name.starts_with("vd") {
        disk.id_serial = attr(&dir.join("serial")).unwrap_or_default();
        disk.serial = disk.id_serial.clone();
    } else if name.starts_with("mmcblk") {
        let device = dir.join("device");
        let card = attr(&device.join("name")).unwrap_or_default();
        let serial = attr(&device.join("serial")).unwrap_or_default();
        disk.id_model = udev_word(&card);
        disk.id_serial = format!("{}_{serial}", disk.id_model);
        disk.serial = serial;
    } else if let Some(scsi) = chain.nearest(is_scsi_device) {
        scsi_identity(&mut disk, &chain, scsi);
    }
    disk.id_path = path_id(&chain, nsid.as_deref());
    Some(disk)
}

/// Where an NVMe namespace's `model` and `serial` are: udev's `ATTRS{}` take the nearest
/// parent that has them (the subsystem under multipath, else the controller).
fn subsystem_or_controller(chain: &Chain) -> PathBuf {
    (0..chain.names.len())
        .rev()
        .map(|i| chain.dir(i))
        .find(|d| d.join("model").exists())
        .unwrap_or_else(|| chain.devices.clone())
}

fn nvme_identity(disk: &mut Disk, dir: &Path, ctrl: &Path, nsid: Option<&str>) {
    let model = attr(&ctrl.join("model")).unwrap_or_default();
    let serial = attr(&ctrl.join("serial")).unwrap_or_default();
    // 60-persistent-storage.rules (systemd >= 254): ID_SERIAL = model_serial_nsid, with
    // string_escape=replace; ID_MODEL keeps the model's spaces.
    disk.id_serial = match nsid {
        Some(ns) => udev_word(&format!("{model}_{serial}_{ns}")),
        None => udev_word(&format!("{model}_{serial}")),
    };
    disk.id_model = model;
    disk.serial = serial;
    disk.id_wwn = attr(&dir.join("wwid")).unwrap_or_default();
}

fn scsi_identity(disk: &mut Disk, chain: &Chain, scsi: usize) {
    let dev = chain.dir(scsi);
    let vendor = attr(&dev.join("vendor")).unwrap_or_default();
    let model = attr(&dev.join("model")).unwrap_or_default();
    let serial80 = read_limited(&dev.join("vpd_pg80"))
        .map(|p| vpd_serial(&p))
        .unwrap_or_default();
    if vendor == "ATA" {
        // 60-persistent-storage.rules runs ata_id for SCSI disks whose vendor is "ATA",
        // whether on libata or behind a SAS HBA or RAID controller in HBA mode.
        let identify = read_limited(&dev.join("vpd_pg89")).and_then(|p| identify_page(&p));
        let (model, serial, wwn) = match identify {
            Some(id) => (
                ata_string(&id, 27, 47),
                ata_string(&id, 10, 20),
                ata_wwn(&id),
            ),
            None => (model, serial80, None),
        };
        let id_model = udev_word(&model);
        let short = udev_word(&serial);
        disk.id_serial = if short.is_empty() {
            id_model.clone()
        } else {
            format!("{id_model}_{short}")
        };
        disk.id_model = id_model;
        disk.serial = serial;
        disk.id_wwn = wwn.map(|w| format!("0x{w:016x}")).unwrap_or_default();
        return;
    }
    disk.id_vendor = udev_word(&vendor);
    disk.id_model = udev_word(&model);
    if let Some(usb) = chain.nearest(is_usb_interface).filter(|&u| u < scsi) {
        // usb_id: vendor_model_serial-instance, the serial from the USB device's descriptor.
        let serial = attr(&chain.dir(usb - 1).join("serial")).unwrap_or_default();
        let (_, _, target, lun) = scsi_address(&chain.names[scsi]).unwrap_or_default();
        let mut id = format!("{}_{}", disk.id_vendor, disk.id_model);
        if !serial.is_empty() {
            id.push('_');
            id.push_str(&udev_word(&serial));
        }
        disk.id_serial = format!("{id}-{target}:{lun}");
        disk.serial = serial;
        return;
    }
    let designators = read_limited(&dev.join("vpd_pg83"))
        .map(|p| designators(&p))
        .unwrap_or_default();
    disk.serial = serial80.clone();
    // scsi_id: the best logical-unit designator of page 0x83, the type's hex digit first;
    // a vendor-specific one behind the vendor and model; else page 0x80 behind 'S'.
    let padded = format!("{vendor:<8}{model:<16}");
    disk.id_serial = match best_designator(&designators) {
        Some(d) if d.kind == 3 || d.kind == 2 => {
            format!("{:x}{}", d.kind, crate::cache::hex(&d.value))
        }
        Some(d) if d.kind == 0 => udev_word(&format!("0{padded}{}", text(&d.value))),
        Some(d) => udev_word(&format!("{:x}{}", d.kind, text(&d.value))),
        None if !serial80.is_empty() => udev_word(&format!("S{padded}{serial80}")),
        None => String::new(),
    };
    if let Some(naa) = designators.iter().find(|d| d.kind == 3) {
        let h = crate::cache::hex(&naa.value);
        disk.id_wwn = format!("0x{}", &h[..h.len().min(16)]);
    }
}

/// udev's `path_id`: from the disk up, each transport adds its part, each run of PCI
/// devices its lowest member.
fn path_id(chain: &Chain, nsid: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let names = &chain.names;
    let mut i = names.len();
    while i > 0 {
        i -= 1;
        let name = names[i].as_str();
        if is_scsi_device(name) {
            parts.push(scsi_part(chain, i));
        } else if is_nvme_controller(name) && i > 0 && names[i - 1] == "nvme" {
            if let Some(ns) = nsid {
                parts.push(format!("nvme-{ns}"));
            }
        } else if is_usb_interface(name) {
            // `1-1.4:1.0` → `usb-0:1.4:1.0`; the hub chain above adds nothing.
            let port = name.split_once('-').map_or(name, |(_, p)| p);
            parts.push(format!("usb-0:{port}"));
            while i > 0 && is_usb_device(&names[i - 1]) {
                i -= 1;
            }
        } else if is_pci(name) {
            parts.push(format!("pci-{name}"));
            while i > 0 && is_pci(&names[i - 1]) {
                i -= 1;
            }
        }
    }
    parts.reverse();
    parts.join("-")
}

/// The part a SCSI device adds (systemd's `path_id`, `handle_scsi_*`):
/// - libata: `ata-<port>.<target>` (`ata-1.0`; behind a port multiplier, whose ports libata
///   numbers as the channel, `ata-<port>.<channel>.0`), measured on Debian 12's systemd 252;
///   the old `ata-<port>` only survives as a compatibility by-path link (`ID_PATH_ATA_COMPAT`).
/// - SAS: behind a port of one phy, `sas-phy<n>-lun-<l>`, or `sas-exp<address>-phy<n>-lun-<l>`
///   when that port is an expander's; behind a wide port, `sas-<address>-lun-<l>` with the end
///   device's address.
/// - else `scsi-<host>:<channel>:<target>:<lun>`, the host numbered from the lowest host of
///   the same adapter (so a second HBA does not renumber the first's disks).
fn scsi_part(chain: &Chain, i: usize) -> String {
    let (host, channel, target, lun) = scsi_address(&chain.names[i]).unwrap_or_default();
    if let Some(ata) = chain.nearest(|n| n.starts_with("ata") && n[3..].parse::<u32>().is_ok()) {
        let name = &chain.names[ata];
        let port = attr(&chain.dir(ata).join("ata_port").join(name).join("port_no"))
            .unwrap_or_else(|| name[3..].to_string());
        return if channel == 0 {
            format!("ata-{port}.{target}")
        } else {
            format!("ata-{port}.{channel}.0")
        };
    }
    if let Some(end) = chain.nearest(|n| n.starts_with("end_device-"))
        && let Some(part) = sas_part(chain, end, lun)
    {
        return part;
    }
    let base = chain
        .nearest(|n| n == format!("host{host}"))
        .filter(|&h| h > 0)
        .map(|h| {
            listing(&chain.dir(h - 1))
                .iter()
                .filter_map(|n| n.strip_prefix("host")?.parse::<u32>().ok())
                .min()
                .unwrap_or(host)
        })
        .unwrap_or(host);
    format!(
        "scsi-{}:{channel}:{target}:{lun}",
        host.saturating_sub(base)
    )
}

/// A SAS disk's part: its end device is `chain.names[end]`, the port above it, and above
/// that the HBA or an expander (each with a `sas_device`/`sas_port` class directory).
fn sas_part(chain: &Chain, end: usize, lun: u64) -> Option<String> {
    let class = |i: usize, class: &str, attribute: &str| {
        attr(
            &chain
                .dir(i)
                .join(class)
                .join(&chain.names[i])
                .join(attribute),
        )
    };
    let port = end
        .checked_sub(1)
        .filter(|&p| chain.names[p].starts_with("port-"));
    let phys = port.and_then(|p| class(p, "sas_port", "num_phys"));
    if let (Some(port), Some("1")) = (port, phys.as_deref()) {
        let phy = class(end, "sas_device", "phy_identifier")?;
        let expander = port
            .checked_sub(1)
            .filter(|&x| chain.names[x].starts_with("expander-"))
            .and_then(|x| class(x, "sas_device", "sas_address"));
        return Some(match expander {
            Some(address) => format!("sas-exp{address}-phy{phy}-lun-{lun}"),
            None => format!("sas-phy{phy}-lun-{lun}"),
        });
    }
    let address = class(end, "sas_device", "sas_address")?;
    Some(format!("sas-{address}-lun-{lun}"))
}

fn scsi_address(name: &str) -> Option<(u32, u32, u32, u64)> {
    let mut it = name.split(':');
    let h = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let l = it.next()?.parse().ok()?;
    it.next().is_none().then_some((h, c, t, l))
}

fn is_scsi_device(name: &str) -> bool {
    scsi_address(name).is_some()
}

/// `0000:3b:00.0`, and VMD's five-digit domains (`10000:e1:00.0`).
fn is_pci(name: &str) -> bool {
    let mut it = name.split(':');
    let (Some(domain), Some(bus), Some(devfn), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((dev, func)) = devfn.split_once('.') else {
        return false;
    };
    (4..=8).contains(&domain.len())
        && hex(domain)
        && bus.len() == 2
        && hex(bus)
        && dev.len() == 2
        && hex(dev)
        && func.len() == 1
        && hex(func)
}

fn is_nvme_controller(name: &str) -> bool {
    name.strip_prefix("nvme")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A USB interface: `1-1.4:1.0`.
fn is_usb_interface(name: &str) -> bool {
    name.split_once(':').is_some_and(|(dev, cfg)| {
        is_usb_device(dev) && cfg.split_once('.').is_some_and(|(c, i)| num(c) && num(i))
    })
}

/// A USB device or root hub: `1-1.4`, `usb1`.
fn is_usb_device(name: &str) -> bool {
    if let Some(bus) = name.strip_prefix("usb") {
        return num(bus);
    }
    name.split_once('-')
        .is_some_and(|(bus, ports)| num(bus) && ports.split('.').all(num))
}

fn num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// udev's whitespace and character replacement (`udev_replace_whitespace`, then
/// `udev_replace_chars`): the ends trimmed, each run of whitespace one `_`, and anything
/// outside `[A-Za-z0-9#+-.:=@_]` and plain UTF-8 letters `_`.
fn udev_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push('_');
        }
        for c in word.chars() {
            let ok = c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c) || !c.is_ascii();
            out.push(if ok && !c.is_control() { c } else { '_' });
        }
    }
    out
}

/// IDENTIFY DEVICE data from VPD page 0x89 (SAT: the 512 bytes start at offset 60).
fn identify_page(page: &[u8]) -> Option<Vec<u8>> {
    (page.get(1) == Some(&0x89))
        .then(|| page.get(60..60 + 512))
        .flatten()
        .map(<[u8]>::to_vec)
}

/// An ATA string: words `from..to` of IDENTIFY data, each word's two bytes swapped.
fn ata_string(identify: &[u8], from: usize, to: usize) -> String {
    let mut bytes = Vec::with_capacity((to - from) * 2);
    for w in from..to {
        if let Some(pair) = identify.get(w * 2..w * 2 + 2) {
            bytes.push(pair[1]);
            bytes.push(pair[0]);
        }
    }
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// The WWN in words 108-111, where word 87 bit 8 says it is there (ATA8-ACS).
fn ata_wwn(identify: &[u8]) -> Option<u64> {
    let word = |w: usize| u16::from_le_bytes([identify[w * 2], identify[w * 2 + 1]]);
    if word(87) & 0x100 == 0 {
        return None;
    }
    let wwn = (108..112).fold(0u64, |acc, w| (acc << 16) | u64::from(word(w)));
    (wwn != 0).then_some(wwn)
}

/// The unit serial number of VPD page 0x80.
fn vpd_serial(page: &[u8]) -> String {
    if page.get(1) != Some(&0x80) || page.len() < 4 {
        return String::new();
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = &page[4..page.len().min(4 + len)];
    text(body)
}

/// One designator of VPD page 0x83.
#[derive(Debug, Clone)]
struct Designator {
    /// The designator type (0 vendor specific, 1 T10, 2 EUI-64, 3 NAA, 8 SCSI name).
    kind: u8,
    value: Vec<u8>,
}

/// The designators of VPD page 0x83 that name the logical unit (association 0).
fn designators(page: &[u8]) -> Vec<Designator> {
    let mut out = Vec::new();
    if page.get(1) != Some(&0x83) || page.len() < 4 {
        return out;
    }
    let end = page
        .len()
        .min(4 + usize::from(u16::from_be_bytes([page[2], page[3]])));
    let mut at = 4;
    while at + 4 <= end {
        let len = usize::from(page[at + 3]);
        let Some(value) = page
            .get(at + 4..at + 4 + len)
            .filter(|_| at + 4 + len <= end)
        else {
            break;
        };
        let association = (page[at + 1] >> 4) & 0x3;
        if association == 0 {
            out.push(Designator {
                kind: page[at + 1] & 0x0f,
                value: value.to_vec(),
            });
        }
        at += 4 + len;
    }
    out
}

/// scsi_id's order: NAA (the longest first), EUI-64, T10 vendor id, vendor specific.
fn best_designator(all: &[Designator]) -> Option<&Designator> {
    let rank = |d: &Designator| match d.kind {
        3 => Some((0, std::cmp::Reverse(d.value.len()))),
        2 => Some((1, std::cmp::Reverse(d.value.len()))),
        1 => Some((2, std::cmp::Reverse(0))),
        0 => Some((3, std::cmp::Reverse(0))),
        _ => None,
    };
    all.iter()
        .filter_map(|d| rank(d).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

#[cfg(test)]
mod tests;
