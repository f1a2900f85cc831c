#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::DiskMatch;

const GB: u64 = 1_000_000_000;

fn disk(
    path: &str,
    serial: &str,
    model: &str,
    vendor: &str,
    id_path: &str,
    size: u64,
    rotational: bool,
) -> UdevDisk {
    UdevDisk {
        path: path.into(),
        id_serial: serial.into(),
        id_model: model.into(),
        id_vendor: vendor.into(),
        id_path: id_path.into(),
        size,
        rotational,
    }
}

/// A Dell PowerEdge storage node as udev on an Ubuntu 24.04 installer names its disks.
/// Sources (published `ls -l /dev/disk/by-id`, `lsblk` and `udevadm info` output; `ID_SERIAL` is
/// what the by-id link carries after `ata-`/`nvme-`/`usb-`):
/// - BOSS: a Proxmox host's inventory: `ata-DELLBOSS_VD_aa06e20941c90010`, lsblk model
///   `DELLBOSS VD`, 223.5 GiB. Its RAID-1 virtual disk says rotational (Marvell's VD).
/// - SATA SSDs behind the PERC in HBA mode: same inventory, `ata-MTFDDAK1T9TDT_222939CA58D4`,
///   `ata-HFS1T9G3H2X069N_ADB5N4365I150584Z`, 1.75 TiB.
/// - NVMe: a NixOS disko config, `nvme-Dell_Ent_NVMe_AGN_MU_U.2_1.6TB_S61ENE0N801250`; udev
///   keeps the NVMe model's spaces in `ID_MODEL` and, since systemd 254, appends the namespace
///   to `ID_SERIAL` (`…_1`, as a published KIOXIA dump shows).
/// - IDSDM (internal dual SD module): a MAAS machine listing,
///   `usb-Dell_Internal_Dual_SD_0123456789AB-0:0`, model `Internal Dual SD`; 16 GB on 14G.
/// - A USB stick left in the front port: a LAVA device dictionary,
///   `usb-SanDisk_Cruzer_Blade_20060266531DA442AD42-0:0`.
pub(crate) fn dell_storage_node() -> Vec<UdevDisk> {
    vec![
        disk(
            "/dev/sda",
            "DELLBOSS_VD_aa06e20941c90010",
            "DELLBOSS_VD",
            "",
            // `ls -l /dev/disk/by-path` shows `…-ata-1`, the compatibility link; ID_PATH has
            // carried the target since systemd 251 (`ata-1.0`, as the lab test measures).
            "pci-0000:c3:00.0-ata-1.0",
            240 * GB,
            true,
        ),
        disk(
            "/dev/sdb",
            "MTFDDAK1T9TDT_222939CA58D4",
            "MTFDDAK1T9TDT",
            "",
            "pci-0000:3b:00.0-scsi-0:0:0:0",
            1920 * GB,
            false,
        ),
        disk(
            "/dev/sdc",
            "HFS1T9G3H2X069N_ADB5N4365I150584Z",
            "HFS1T9G3H2X069N",
            "",
            "pci-0000:3b:00.0-scsi-0:0:1:0",
            1920 * GB,
            false,
        ),
        disk(
            "/dev/nvme0n1",
            "Dell_Ent_NVMe_AGN_MU_U.2_1.6TB_S61ENE0N801250_1",
            "Dell Ent NVMe AGN MU U.2 1.6TB",
            "",
            "pci-0000:c1:00.0-nvme-1",
            1600 * GB,
            false,
        ),
        disk(
            "/dev/sdd",
            "Dell_Internal_Dual_SD_0123456789AB-0:0",
            "Internal_Dual_SD",
            "Dell",
            "pci-0000:00:14.0-usb-0:1.4:1.0-scsi-0:0:0:0",
            16 * GB,
            false,
        ),
        disk(
            "/dev/sde",
            "SanDisk_Cruzer_Blade_20060266531DA442AD42-0:0",
            "Cruzer_Blade",
            "SanDisk",
            "pci-0000:00:14.0-usb-0:2:1.0-scsi-0:0:0:0",
            16 * GB,
            true,
        ),
    ]
}

/// An HPE node: a Smart Array logical volume and SAS disks. Sources: published `udevadm info`
/// dumps: the logical volume (`ID_SERIAL=3600508b1001ca98d5d765bea5a0dd3fa`, `ID_SCSI_SERIAL=
/// 50014380212E90E0`, `ID_PATH=pci-0000:04:00.0-scsi-0:1:0:0`, by-id
/// `scsi-0HP_LOGICAL_VOLUME_…`), and an HP-branded Seagate SAS disk (`ID_VENDOR=HP`,
/// `ID_MODEL=MB8000JFECQ`, `ID_SERIAL=35000c50093fddc5f`, `ID_SCSI_SERIAL=ZA17WDAG`,
/// `ID_PATH=pci-0000:03:00.0-sas-0x5000c50093fddc5d-lun-0`). The second SAS disk is the same
/// model in the next bay (its WWN and path derived from the first's).
pub(crate) fn hpe_node() -> Vec<UdevDisk> {
    vec![
        disk(
            "/dev/sda",
            "3600508b1001ca98d5d765bea5a0dd3fa",
            "LOGICAL_VOLUME",
            "HP",
            "pci-0000:04:00.0-scsi-0:1:0:0",
            480 * GB,
            true,
        ),
        disk(
            "/dev/sdb",
            "35000c50093fddc5f",
            "MB8000JFECQ",
            "HP",
            "pci-0000:03:00.0-sas-0x5000c50093fddc5d-lun-0",
            8000 * GB,
            true,
        ),
        disk(
            "/dev/sdc",
            "35000c50093fdd0a3",
            "MB8000JFECQ",
            "HP",
            "pci-0000:03:00.0-sas-0x5000c50093fdd0a1-lun-0",
            8000 * GB,
            true,
        ),
    ]
}

/// Two identical NVMe drives. Source: a published `udevadm info` of a KIOXIA XG7
/// (`ID_MODEL=KXG70PNV2T04 NVMe KIOXIA 2048GB`, `ID_SERIAL=…_12KFC0BAFTW5_1`,
/// `ID_PATH=pci-0000:00:0e.0-pci-10000:e1:00.0-nvme-1`); the second is its twin on the next
/// port (serial and path derived).
pub(crate) fn nvme_twins() -> Vec<UdevDisk> {
    vec![
        disk(
            "/dev/nvme0n1",
            "KXG70PNV2T04_NVMe_KIOXIA_2048GB_12KFC0BAFTW5_1",
            "KXG70PNV2T04 NVMe KIOXIA 2048GB",
            "",
            "pci-0000:00:0e.0-pci-10000:e1:00.0-nvme-1",
            2048 * GB,
            false,
        ),
        disk(
            "/dev/nvme1n1",
            "KXG70PNV2T04_NVMe_KIOXIA_2048GB_12KFC0BAFTX2_1",
            "KXG70PNV2T04 NVMe KIOXIA 2048GB",
            "",
            "pci-0000:00:0e.0-pci-10000:e2:00.0-nvme-1",
            2048 * GB,
            false,
        ),
    ]
}

/// Dell PERC H710 virtual disks. Source: a MAAS machine listing (`PERC H710`, by-id
/// `wwn-0x6c81f660dba9cc002fedeb53d8986a2b` 1.82 TiB and `wwn-0x6c81f660dba9cc002ffb0029198533d2`
/// 465.25 GiB); a SCSI volume's `ID_SERIAL` is `3` + that WWN, its model `PERC_H710`.
pub(crate) fn perc_node() -> Vec<UdevDisk> {
    vec![
        disk(
            "/dev/sda",
            "36c81f660dba9cc002fedeb53d8986a2b",
            "PERC_H710",
            "DELL",
            "pci-0000:03:00.0-scsi-0:2:0:0",
            2000 * GB,
            true,
        ),
        disk(
            "/dev/sdb",
            "36c81f660dba9cc002ffb0029198533d2",
            "PERC_H710",
            "DELL",
            "pci-0000:03:00.0-scsi-0:2:1:0",
            500 * GB,
            true,
        ),
    ]
}

/// QEMU's disks as the lab gives them. Sources: virtio's `ID_SERIAL` is the bare `serial=`;
/// a published `udevadm info` of a QEMU `scsi-hd` with `serial=disk1`:
/// `ID_SERIAL=0QEMU_QEMU_HARDDISK_disk1`, `ID_MODEL=QEMU_HARDDISK`, `ID_VENDOR=QEMU`.
pub(crate) fn qemu_node() -> Vec<UdevDisk> {
    vec![
        disk(
            "/dev/vda",
            "seed-os-disk",
            "",
            "",
            "pci-0000:00:04.0",
            20 * GB,
            true,
        ),
        disk(
            "/dev/sda",
            "0QEMU_QEMU_HARDDISK_disk1",
            "QEMU_HARDDISK",
            "QEMU",
            "pci-0000:03:00.0-scsi-0:0:0:0",
            20 * GB,
            true,
        ),
    ]
}

fn rule(f: impl FnOnce(&mut DiskMatch)) -> DiskMatch {
    let mut d = DiskMatch::default();
    f(&mut d);
    d
}

/// The one disk subiquity would pick for `rule` on `disks`, asserting nothing else matched.
fn alone<'d>(rule: &DiskMatch, disks: &'d [UdevDisk]) -> &'d str {
    let m = subiquity_match(rule);
    let found = candidates(&m, disks);
    assert_eq!(
        found.len(),
        1,
        "{rule} → {m:?} should select one disk, selects {:?}",
        found.iter().map(|d| &d.path).collect::<Vec<_>>()
    );
    &found[0].path
}

#[test]
fn each_disk_written_as_an_operator_reads_it_is_chosen_alone() {
    let dell = dell_storage_node();
    // Model as the BMC and lsblk show it (the example rack's storage rule).
    assert_eq!(
        alone(&rule(|d| d.model = Some("DELLBOSS VD".into())), &dell),
        "/dev/sda"
    );
    // A serial from the label or the BMC, on ATA (model prefix) and NVMe (namespace suffix).
    assert_eq!(
        alone(&rule(|d| d.serial = Some("222939CA58D4".into())), &dell),
        "/dev/sdb"
    );
    assert_eq!(
        alone(&rule(|d| d.serial = Some("S61ENE0N801250".into())), &dell),
        "/dev/nvme0n1"
    );
    // NVMe models keep their spaces; the same words match.
    assert_eq!(
        alone(
            &rule(|d| d.model = Some("Dell Ent NVMe AGN MU U.2 1.6TB".into())),
            &dell
        ),
        "/dev/nvme0n1"
    );
    // by-path, copied from /dev/disk/by-path/.
    assert_eq!(
        alone(
            &rule(|d| d.id_path = Some("/dev/disk/by-path/pci-0000:3b:00.0-scsi-0:0:1:0".into())),
            &dell
        ),
        "/dev/sdc"
    );

    let hpe = hpe_node();
    // A RAID volume by the WWN the controller (and Redfish's Volume) reports, in any case.
    assert_eq!(
        alone(
            &rule(|d| d.wwn = Some("0x600508B1001CA98D5D765BEA5A0DD3FA".into())),
            &hpe
        ),
        "/dev/sda"
    );
    assert_eq!(
        alone(&rule(|d| d.model = Some("LOGICAL VOLUME".into())), &hpe),
        "/dev/sda"
    );
    // One SAS disk of two identical ones, by its WWN.
    assert_eq!(
        alone(&rule(|d| d.wwn = Some("naa.5000c50093fdd0a3".into())), &hpe),
        "/dev/sdc"
    );
    // Vendor narrows a model.
    assert_eq!(
        alone(
            &rule(|d| {
                d.vendor = Some("HP".into());
                d.model = Some("LOGICAL VOLUME".into());
            }),
            &hpe
        ),
        "/dev/sda"
    );

    let twins = nvme_twins();
    assert_eq!(
        alone(&rule(|d| d.serial = Some("12KFC0BAFTX2".into())), &twins),
        "/dev/nvme1n1"
    );

    let perc = perc_node();
    assert_eq!(
        alone(
            &rule(|d| d.wwn = Some("wwn-0x6c81f660dba9cc002ffb0029198533d2".into())),
            &perc
        ),
        "/dev/sdb"
    );

    let qemu = qemu_node();
    assert_eq!(
        alone(&rule(|d| d.serial = Some("seed-os-disk".into())), &qemu),
        "/dev/vda"
    );
    assert_eq!(
        alone(&rule(|d| d.serial = Some("disk1".into())), &qemu),
        "/dev/sda"
    );
    assert_eq!(
        alone(&rule(|d| d.model = Some("QEMU HARDDISK".into())), &qemu),
        "/dev/sda"
    );
    // The operator's own glob is theirs.
    assert_eq!(
        alone(&rule(|d| d.model = Some("QEMU_HARD*".into())), &qemu),
        "/dev/sda"
    );
}

#[test]
fn the_example_racks_rules_choose_the_boss_card_alone() {
    let config =
        crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("rack.yaml")).unwrap();
    let dell = dell_storage_node();
    for node in &config.nodes {
        assert_eq!(
            alone(&node.disk, &dell),
            "/dev/sda",
            "{}: {}",
            node.name,
            node.disk
        );
    }
}

#[test]
fn what_failed_before_fails_under_subiquitys_rules() {
    let raw = |key: &str, value: &str| BTreeMap::from([(key.to_string(), Value::from(value))]);
    let dell = dell_storage_node();
    // The model passed through as written: udev says DELLBOSS_VD, so nothing matches.
    assert!(candidates(&raw("model", "DELLBOSS VD"), &dell).is_empty());
    // A serial passed through as written: ID_SERIAL carries the model before it.
    assert!(candidates(&raw("serial", "222939CA58D4"), &dell).is_empty());
    // `size: smallest, ssd: true` (the example's old rule) takes the SD module.
    let mut m = raw("size", "smallest");
    m.insert("ssd".into(), Value::from(true));
    assert_eq!(candidates(&m, &dell)[0].path, "/dev/sdd");
    // A SAS disk's label serial is not in ID_SERIAL: only its WWN finds it.
    let hpe = hpe_node();
    let label = subiquity_match(&rule(|d| d.serial = Some("ZA17WDAG".into())));
    assert!(candidates(&label, &hpe).is_empty());
}

#[test]
fn fnmatchcase_follows_python() {
    // Cases checked against CPython 3.11's fnmatch.fnmatchcase.
    for (name, pattern, want) in [
        ("DELLBOSS_VD", "DELLBOSS[ _]VD", true),
        ("DELLBOSS VD", "DELLBOSS[ _]VD", true),
        ("DELLBOSS-VD", "DELLBOSS[ _]VD", false),
        ("abc", "a*", true),
        ("abc", "*c", true),
        ("abc", "*b", false),
        ("abc", "a?c", true),
        ("ac", "a?c", false),
        ("a*c", "a[*]c", true),
        ("abc", "a[*]c", false),
        ("a[c", "a[c", true),
        ("abc", "a[!b]c", false),
        ("axc", "a[!b]c", true),
        ("a]c", "a[]]c", true),
        ("a5c", "a[0-9]c", true),
        ("aXc", "a[0-9]c", false),
        ("", "*", true),
        ("", "?", false),
        ("ABC", "abc", false),
        ("x_S61ENE0N801250_1", "*S61ENE0N801250*", true),
        ("aaab", "*a*b", true),
        ("aaac", "*a*b", false),
    ] {
        assert_eq!(fnmatchcase(name, pattern), want, "{name:?} ~ {pattern:?}");
    }
}

#[test]
fn literal_values_are_escaped_and_words_joined() {
    let m = subiquity_match(&rule(|d| {
        d.model = Some("  PERC  H740P Mini ".into());
        d.serial = Some("AB[1]".into());
    }));
    assert_eq!(m["model"], "PERC[ _]H740P[ _]Mini");
    // `[` is a glob character: the operator's glob, passed on.
    assert_eq!(m["serial"], "AB[1]");
    let m = subiquity_match(&rule(|d| d.serial = Some("S4EVNX0N123456".into())));
    assert_eq!(m["serial"], "*S4EVNX0N123456*");
    assert_eq!(
        wwn_hex("0x5000C500A1B2C3D4").as_deref(),
        Some("5000c500a1b2c3d4")
    );
    assert_eq!(wwn_hex("5000c500a1b2c3"), None);
}
