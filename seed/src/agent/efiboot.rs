//! The UEFI boot entry of a written disk: after the image is written, the agent adds a
//! `Boot####` variable for the image's EFI system partition and its removable-media loader
//! (`\EFI\BOOT\BOOTX64.EFI`, which Debian's and Ubuntu's cloud images carry: shim or
//! systemd-boot), appends it to `BootOrder` after what is there (the NIC stays first, so seed
//! can reprovision the node, and seed's "local disk" answer, iPXE's `exit`, falls through to
//! it), and sets `BootNext` to it: the first boot of the written system is straight from its
//! disk, with no DHCP request to seed.
//!
//! Variables are written through efivarfs (Documentation/filesystems/efivarfs.rst): a file
//! `<Name>-<vendor GUID>` whose content is the 4-byte attributes and the data, in one write.
//! The load option is UEFI 2.10 §3.1.3 `EFI_LOAD_OPTION`; its device path a hard drive media
//! node (§10.3.5.1) and a file path node (§10.3.5.4), the short form firmware expands.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The global variable vendor GUID (`EFI_GLOBAL_VARIABLE`), as efivarfs names it.
const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const ATTRIBUTES: u32 = 0x7;
/// LOAD_OPTION_ACTIVE.
const ACTIVE: u32 = 0x1;
/// The EFI system partition's type GUID (C12A7328-F81F-11D2-BA4B-00A0C93EC93B) as GPT stores it.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
/// The removable-media loader path for x64 (§3.5.1.1).
pub const LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

/// An EFI system partition, as its GPT entry has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Esp {
    /// Its number (1-based entry index).
    pub number: u32,
    /// First LBA.
    pub start: u64,
    /// Length in LBAs.
    pub size: u64,
    /// Its unique partition GUID, in GPT's byte order (the device path takes the same).
    pub guid: [u8; 16],
}

/// The first EFI system partition of the primary GPT of `disk`, with `sector`-byte LBAs.
pub fn esp(disk: &Path, sector: u64) -> Option<Esp> {
    let file = std::fs::File::open(disk).ok()?;
    let read = |at: u64, len: usize| {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, at).ok().map(|()| buf)
    };
    let header = read(sector, 92)?;
    if &header[..8] != b"EFI PART" {
        return None;
    }
    let entries = u64::from_le_bytes(header[72..80].try_into().ok()?);
    let count = u32::from_le_bytes(header[80..84].try_into().ok()?).min(1024);
    let entry_size = u32::from_le_bytes(header[84..88].try_into().ok()?);
    if !(128..=1024).contains(&entry_size) {
        return None;
    }
    let table = read(entries * sector, (count * entry_size) as usize)?;
    table
        .chunks_exact(entry_size as usize)
        .zip(1u32..)
        .find(|(entry, _)| entry[..16] == ESP_TYPE)
        .and_then(|(entry, number)| {
            let first = u64::from_le_bytes(entry[32..40].try_into().ok()?);
            let last = u64::from_le_bytes(entry[40..48].try_into().ok()?);
            Some(Esp {
                number,
                start: first,
                size: last.checked_sub(first)? + 1,
                guid: entry[16..32].try_into().ok()?,
            })
        })
}

/// The device path of a virtio-blk disk up to the disk (`PciRoot(0x0)/Pci(0x5,0x0)`), from
/// sysfs under `root`; `None` for every other disk. The short form (from the partition on,
/// what efibootmgr writes) is enough for servers' firmware, which expands it; OVMF with QEMU's
/// boot order (`bootindex`) drops every boot option that does not begin at a device of that
/// order (QemuBootOrderLib), which for a virtual machine's disk is this path (measured: the
/// short-form entry and the BootNext naming it were gone on the next boot).
pub fn virtio_prefix(root: &Path, disk: &Path) -> Option<Vec<u8>> {
    let name = disk.file_name()?.to_str()?;
    let device = std::fs::canonicalize(root.join(format!("sys/block/{name}/device"))).ok()?;
    let driver = std::fs::read_link(device.join("driver")).ok()?;
    if driver.file_name()?.to_str()? != "virtio_blk" {
        return None;
    }
    let mut path = Vec::new();
    let mut components = device.iter().filter_map(|c| c.to_str());
    // /sys/devices/pci0000:00/0000:00:05.0/virtio2: the root bus, then each PCI function.
    let bus = components.find_map(|c| c.strip_prefix("pci"))?;
    let bus = u32::from_str_radix(bus.split(':').nth(1)?, 16).ok()?;
    // ACPI device path (type 2, subtype 1): _HID PNP0A03 (EISA-encoded), _UID the root bus.
    path.extend([0x02, 0x01, 12, 0]);
    path.extend(0x0a03_41d0u32.to_le_bytes());
    path.extend(bus.to_le_bytes());
    let mut functions = 0;
    for c in components {
        let Some((_, devfn)) = c.rsplit_once(':') else {
            continue;
        };
        let Some((dev, function)) = devfn.split_once('.') else {
            continue;
        };
        let (Ok(dev), Ok(function)) = (u8::from_str_radix(dev, 16), function.parse::<u8>()) else {
            continue;
        };
        // PCI device path (type 1, subtype 1): function, device.
        path.extend([0x01, 0x01, 6, 0, function, dev]);
        functions += 1;
    }
    (functions > 0).then_some(path)
}

/// `EFI_LOAD_OPTION` that boots `loader` from `esp`, shown as `description`; `prefix` is the
/// disk's own device path when the firmware needs it whole ([`virtio_prefix`]).
pub fn load_option(description: &str, prefix: Option<&[u8]>, esp: &Esp, loader: &str) -> Vec<u8> {
    let mut path = prefix.map(<[u8]>::to_vec).unwrap_or_default();
    // Hard drive media device path: type 4, subtype 1, 42 bytes.
    path.extend([0x04, 0x01, 42, 0]);
    path.extend(esp.number.to_le_bytes());
    path.extend(esp.start.to_le_bytes());
    path.extend(esp.size.to_le_bytes());
    path.extend(esp.guid);
    // Partition format 2: GPT; signature type 2: GUID.
    path.extend([0x02, 0x02]);
    // File path media device path: type 4, subtype 4, the path in UCS-2 with its NUL.
    let file: Vec<u8> = utf16z(loader);
    let len = u16::try_from(4 + file.len()).unwrap_or(u16::MAX);
    path.extend([0x04, 0x04]);
    path.extend(len.to_le_bytes());
    path.extend(file);
    // End of the entire device path.
    path.extend([0x7f, 0xff, 0x04, 0x00]);
    let mut option = Vec::new();
    option.extend(ACTIVE.to_le_bytes());
    option.extend(u16::try_from(path.len()).unwrap_or(u16::MAX).to_le_bytes());
    option.extend(utf16z(description));
    option.extend(path);
    option
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// What [`boot_from`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `Boot####` number.
    pub number: u16,
    /// The ESP it boots.
    pub esp: Esp,
    /// Whether `BootOrder` could be extended (some firmware keeps it read-only).
    pub in_boot_order: bool,
}

/// Adds (or replaces) the boot entry `description` for the ESP of `disk` in `efivars`, puts it
/// last in `BootOrder` and sets `BootNext` to it. `None` when the disk has no ESP (a
/// BIOS-only image).
pub fn boot_from(
    efivars: &Path,
    disk: &Path,
    prefix: Option<&[u8]>,
    sector: u64,
    description: &str,
) -> Result<Option<Entry>, String> {
    let Some(esp) = esp(disk, sector) else {
        return Ok(None);
    };
    let option = load_option(description, prefix, &esp, LOADER);
    let var = |name: &str| efivars.join(format!("{name}-{GLOBAL}"));
    let entries: Vec<(u16, Vec<u8>)> = std::fs::read_dir(efivars)
        .map_err(|e| format!("{}: {e}", efivars.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hex = name
                .strip_prefix("Boot")?
                .strip_suffix(&format!("-{GLOBAL}"))?;
            if hex.len() != 4 {
                return None;
            }
            let number = u16::from_str_radix(hex, 16).ok()?;
            Some((number, std::fs::read(e.path()).ok()?))
        })
        .collect();
    // Ours from an earlier deploy (same description) is replaced; else the first free number.
    let ours = entries.iter().find_map(|(n, data)| {
        let body = data.get(4..)?;
        let described = body.get(6..)?;
        described.starts_with(&utf16z(description)).then_some(*n)
    });
    let number = match ours {
        Some(n) => n,
        None => (0u16..=0xffff)
            .find(|n| !entries.iter().any(|(m, _)| m == n))
            .ok_or("no free Boot#### number")?,
    };
    write_var(&var(&format!("Boot{number:04X}")), &option)?;
    let order_path = var("BootOrder");
    let mut order: Vec<u16> = std::fs::read(&order_path)
        .ok()
        .and_then(|d| d.get(4..).map(<[u8]>::to_vec))
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let in_boot_order = if order.contains(&number) {
        true
    } else {
        order.push(number);
        let bytes: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        write_var(&order_path, &bytes).is_ok()
    };
    write_var(&var("BootNext"), &number.to_le_bytes())?;
    Ok(Some(Entry {
        number,
        esp,
        in_boot_order,
    }))
}

/// One efivarfs write: attributes and data together, without truncating (efivarfs takes a
/// variable whole in one write call).
fn write_var(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut buf = ATTRIBUTES.to_le_bytes().to_vec();
    buf.extend(data);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(&buf)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GPT disk image: an ESP as entry 2 (entry 1 something else).
    fn disk(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("disk.img");
        let mut bytes = vec![0u8; 64 * 512];
        bytes[512..520].copy_from_slice(b"EFI PART");
        bytes[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        bytes[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        bytes[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let entry = |i: usize| 1024 + 128 * i;
        bytes[entry(0)] = 0xaf; // some other type
        bytes[entry(1)..entry(1) + 16].copy_from_slice(&ESP_TYPE);
        bytes[entry(1) + 16..entry(1) + 32].copy_from_slice(&[0x11; 16]);
        bytes[entry(1) + 32..entry(1) + 40].copy_from_slice(&2048u64.to_le_bytes());
        bytes[entry(1) + 40..entry(1) + 48].copy_from_slice(&264_191u64.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn the_load_option_is_the_hard_drive_and_file_path_of_the_esp() {
        let dir = tempfile::tempdir().unwrap();
        let esp = esp(&disk(dir.path()), 512).unwrap();
        assert_eq!(
            esp,
            Esp {
                number: 2,
                start: 2048,
                size: 262_144,
                guid: [0x11; 16]
            }
        );
        let option = load_option("seed n1", None, &esp, LOADER);
        assert_eq!(&option[..4], &[1, 0, 0, 0]);
        let path_len = usize::from(u16::from_le_bytes([option[4], option[5]]));
        let description = utf16z("seed n1");
        assert_eq!(&option[6..6 + description.len()], description.as_slice());
        let path = &option[6 + description.len()..];
        assert_eq!(path.len(), path_len);
        assert_eq!(&path[..4], &[4, 1, 42, 0]);
        assert_eq!(&path[4..8], &2u32.to_le_bytes());
        assert_eq!(&path[8..16], &2048u64.to_le_bytes());
        assert_eq!(&path[16..24], &262_144u64.to_le_bytes());
        assert_eq!(&path[40..42], &[2, 2]);
        assert_eq!(&path[42..44], &[4, 4]);
        assert_eq!(&path[path.len() - 4..], &[0x7f, 0xff, 4, 0]);
    }

    #[test]
    fn the_entry_goes_last_in_the_boot_order_and_next_and_is_replaced_on_a_redeploy() {
        let dir = tempfile::tempdir().unwrap();
        let disk = disk(dir.path());
        let vars = dir.path().join("efivars");
        std::fs::create_dir(&vars).unwrap();
        let var = |name: &str| vars.join(format!("{name}-{GLOBAL}"));
        // The firmware's: the NIC (0001) first, a shell (0000).
        std::fs::write(var("Boot0000"), [7, 0, 0, 0, 1, 0]).unwrap();
        std::fs::write(var("Boot0001"), [7, 0, 0, 0, 1, 0]).unwrap();
        std::fs::write(var("BootOrder"), [7, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        let entry = boot_from(&vars, &disk, None, 512, "seed n1")
            .unwrap()
            .unwrap();
        assert_eq!(entry.number, 2);
        assert!(entry.in_boot_order);
        assert_eq!(
            std::fs::read(var("BootOrder")).unwrap(),
            [7, 0, 0, 0, 1, 0, 0, 0, 2, 0]
        );
        assert_eq!(std::fs::read(var("BootNext")).unwrap(), [7, 0, 0, 0, 2, 0]);
        let stored = std::fs::read(var("Boot0002")).unwrap();
        assert_eq!(&stored[..4], &[7, 0, 0, 0]);
        let esp = esp(&disk, 512).unwrap();
        assert_eq!(
            &stored[4..],
            load_option("seed n1", None, &esp, LOADER).as_slice()
        );
        // Deployed again: the same entry, not a second one.
        let again = boot_from(&vars, &disk, None, 512, "seed n1")
            .unwrap()
            .unwrap();
        assert_eq!(again.number, 2);
        assert_eq!(
            std::fs::read(var("BootOrder")).unwrap(),
            [7, 0, 0, 0, 1, 0, 0, 0, 2, 0]
        );
    }

    #[test]
    fn a_virtio_disk_gets_its_pci_path_and_others_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let function = root.join("sys/devices/pci0000:00/0000:00:01.1/0000:02:05.0");
        let virtio = function.join("virtio2");
        std::fs::create_dir_all(&virtio).unwrap();
        std::fs::create_dir_all(root.join("sys/bus/virtio/drivers/virtio_blk")).unwrap();
        std::os::unix::fs::symlink(
            root.join("sys/bus/virtio/drivers/virtio_blk"),
            virtio.join("driver"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("sys/block/vda")).unwrap();
        std::os::unix::fs::symlink(&virtio, root.join("sys/block/vda/device")).unwrap();
        let path = virtio_prefix(root, Path::new("/dev/vda")).unwrap();
        assert_eq!(
            path,
            [
                2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0, // PciRoot(0x0)
                1, 1, 6, 0, 1, 1, // Pci(0x1,0x1)
                1, 1, 6, 0, 0, 5, // Pci(0x5,0x0)
            ]
        );
        assert_eq!(virtio_prefix(root, Path::new("/dev/sda")), None);
    }
}
