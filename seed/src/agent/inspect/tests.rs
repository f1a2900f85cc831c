#![allow(clippy::unwrap_used)]
//! Each machine here is a sysfs tree built as the kernel lays it out for that hardware, and
//! the disks the agent names from it must equal what udev on Ubuntu named the same disks in
//! the published dumps `crate::disk::tests` keeps (sources there). Attribute values that no
//! dump shows (a WWN, a NIC's MAC) are marked as derived.

use std::path::Path;

use super::*;
use crate::disk::tests::{dell_storage_node, hpe_node, nvme_twins, perc_node, qemu_node};

const GB: u64 = 1_000_000_000;

/// A fake root: `sys/` and `proc/` as the kernel shows them.
struct Root(tempfile::TempDir);

impl Root {
    fn new() -> Self {
        let root = Self(tempfile::tempdir().unwrap());
        std::fs::create_dir_all(root.path().join("sys/devices")).unwrap();
        std::fs::create_dir_all(root.path().join("sys/block")).unwrap();
        root
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn link(&self, rel: &str, target: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// A block device `name` at `sys/devices/<at>/<name>`, linked from `sys/block`.
    fn block(&self, at: &str, name: &str, bytes: u64, rotational: bool) -> String {
        let dir = format!("sys/devices/{at}/{name}");
        self.file(&format!("{dir}/size"), format!("{}\n", bytes / 512));
        self.file(
            &format!("{dir}/queue/rotational"),
            if rotational { "1\n" } else { "0\n" },
        );
        self.file(&format!("{dir}/removable"), "0\n");
        self.link(
            &format!("sys/block/{name}"),
            &format!("../devices/{at}/{name}"),
        );
        dir
    }

    /// A SCSI device's inquiry strings, padded as sysfs prints them (`%.8s`, `%.16s`).
    fn inquiry(&self, dev: &str, vendor: &str, model: &str) {
        self.file(
            &format!("sys/devices/{dev}/vendor"),
            format!("{vendor:<8}\n"),
        );
        self.file(
            &format!("sys/devices/{dev}/model"),
            format!("{model:<16}\n"),
        );
    }

    fn scsi(&self, dev: &str, page: &str, bytes: Vec<u8>) {
        self.file(&format!("sys/devices/{dev}/{page}"), bytes);
    }
}

/// VPD page 0x89 (ATA Information, SAT-2) around IDENTIFY DEVICE data with these strings.
fn vpd89(model: &str, serial: &str, wwn: Option<u64>) -> Vec<u8> {
    let mut id = vec![0u8; 512];
    let mut put = |from: usize, to: usize, s: &str| {
        let padded = format!("{s:<width$}", width = (to - from) * 2);
        for (w, pair) in (from..to).zip(padded.as_bytes().chunks(2)) {
            id[w * 2] = pair[1];
            id[w * 2 + 1] = pair[0];
        }
    };
    put(10, 20, serial);
    put(27, 47, model);
    if let Some(wwn) = wwn {
        id[87 * 2 + 1] |= 0x01; // word 87 bit 8: the WWN is valid
        for (i, w) in (108..112).enumerate() {
            let word = (wwn >> (48 - 16 * i)) as u16;
            id[w * 2..w * 2 + 2].copy_from_slice(&word.to_le_bytes());
        }
    }
    let mut page = vec![0u8; 60];
    page[1] = 0x89;
    page[2..4].copy_from_slice(&(568u16).to_be_bytes());
    page[56] = 0xec;
    page.extend(id);
    page
}

/// VPD page 0x80 with a unit serial number.
fn vpd80(serial: &str) -> Vec<u8> {
    let mut page = vec![0, 0x80, 0, serial.len() as u8];
    page.extend(serial.as_bytes());
    page
}

/// VPD page 0x83 with designators (association, type, code set, value).
fn vpd83(designators: &[(u8, u8, u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (association, kind, code_set, value) in designators {
        body.extend([*code_set, (association << 4) | kind, 0, value.len() as u8]);
        body.extend(value);
    }
    let mut page = vec![0, 0x83];
    page.extend((body.len() as u16).to_be_bytes());
    page.extend(body);
    page
}

fn naa(hex: &str) -> (u8, u8, u8, Vec<u8>) {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    (0, 3, 1, bytes)
}

fn udev_disks(root: &Root) -> Vec<UdevDisk> {
    let mut disks: Vec<UdevDisk> = inspect(root.path()).disks.iter().map(Disk::udev).collect();
    disks.sort_by(|a, b| a.path.cmp(&b.path));
    disks
}

fn sorted(mut disks: Vec<UdevDisk>) -> Vec<UdevDisk> {
    disks.sort_by(|a, b| a.path.cmp(&b.path));
    disks
}

/// A Dell PowerEdge: a BOSS card on AHCI, SATA SSDs behind a PERC in HBA mode (vendor
/// "ATA", no libata), an NVMe drive under native multipath (Ubuntu's default, which moves
/// the namespace to `virtual/nvme-subsystem`), an IDSDM and a USB stick.
fn dell_root() -> Root {
    let r = Root::new();
    let boss = "pci0000:c0/0000:c0:03.1/0000:c3:00.0/ata1/host0/target0:0:0/0:0:0:0";
    r.block(&format!("{boss}/block"), "sda", 240 * GB, true);
    r.file(
        "sys/devices/pci0000:c0/0000:c0:03.1/0000:c3:00.0/ata1/ata_port/ata1/port_no",
        "1\n",
    );
    r.inquiry(boss, "ATA", "DELLBOSS VD");
    r.scsi(
        boss,
        "vpd_pg89",
        vpd89("DELLBOSS VD", "aa06e20941c90010", None),
    );

    let perc = "pci0000:3a/0000:3a:00.0/0000:3b:00.0/host1";
    for (target, name, model, serial) in [
        (0, "sdb", "MTFDDAK1T9TDT", "222939CA58D4"),
        (1, "sdc", "HFS1T9G3H2X069N", "ADB5N4365I150584Z"),
    ] {
        let dev = format!("{perc}/target1:0:{target}/1:0:{target}:0");
        r.block(&format!("{dev}/block"), name, 1920 * GB, false);
        r.inquiry(&dev, "ATA", model);
        // ATA drives often right-justify the serial in its 20 characters.
        r.scsi(
            &dev,
            "vpd_pg89",
            vpd89(model, &format!("{serial:>20}"), None),
        );
    }

    let subsys = "virtual/nvme-subsystem/nvme-subsys0";
    let nvme = r.block(subsys, "nvme0n1", 1600 * GB, false);
    r.file(&format!("{nvme}/nsid"), "1\n");
    r.file(
        &format!("{nvme}/wwid"),
        "eui.36344630528012500025384500000001\n",
    ); // derived
    let ctrl = "pci0000:c0/0000:c0:01.1/0000:c1:00.0/nvme/nvme0";
    for dir in [subsys, ctrl] {
        r.file(
            &format!("sys/devices/{dir}/model"),
            format!("{:<40}\n", "Dell Ent NVMe AGN MU U.2 1.6TB"),
        );
        r.file(
            &format!("sys/devices/{dir}/serial"),
            format!("{:<20}\n", "S61ENE0N801250"),
        );
    }
    r.link(
        &format!("sys/devices/{subsys}/nvme0"),
        &format!("../../../{ctrl}"),
    );
    // The controller's own path to the namespace, which the kernel hides.
    let hidden = r.block(ctrl, "nvme0c0n1", 1600 * GB, false);
    r.file(&format!("{hidden}/hidden"), "1\n");

    let idsdm = "pci0000:00/0000:00:14.0/usb1/1-1/1-1.4";
    let dev = format!("{idsdm}/1-1.4:1.0/host6/target6:0:0/6:0:0:0");
    r.block(&format!("{dev}/block"), "sdd", 16 * GB, false);
    r.inquiry(&dev, "Dell", "Internal Dual SD");
    r.file(&format!("sys/devices/{idsdm}/serial"), "0123456789AB\n");

    let stick = "pci0000:00/0000:00:14.0/usb2/2-2";
    let dev = format!("{stick}/2-2:1.0/host7/target7:0:0/7:0:0:0");
    let block = r.block(&format!("{dev}/block"), "sde", 16 * GB, true);
    r.file(&format!("{block}/removable"), "1\n");
    r.inquiry(&dev, "SanDisk", "Cruzer Blade");
    r.file(
        &format!("sys/devices/{stick}/serial"),
        "20060266531DA442AD42\n",
    );

    // What is no disk to install to.
    r.block("virtual/block", "loop0", GB, false);
    r.block("virtual/block", "md127", 240 * GB, false);
    r.block("virtual/block", "dm-0", 240 * GB, false);
    r.block(
        "pci0000:00/0000:00:17.0/ata5/host4/target4:0:0/4:0:0:0/block",
        "sr0",
        GB,
        true,
    );
    r
}

#[test]
fn a_dell_nodes_disks_are_named_as_udev_named_them() {
    let root = dell_root();
    assert_eq!(udev_disks(&root), sorted(dell_storage_node()));
    let inspection = inspect(root.path());
    let by_path = |p: &str| inspection.disks.iter().find(|d| d.path == p).unwrap();
    assert_eq!(by_path("/dev/sdb").serial, "222939CA58D4");
    assert_eq!(by_path("/dev/nvme0n1").serial, "S61ENE0N801250");
    assert_eq!(
        by_path("/dev/nvme0n1").id_wwn,
        "eui.36344630528012500025384500000001"
    );
    assert!(by_path("/dev/sde").removable);
    assert!(!by_path("/dev/sda").removable);
}

#[test]
fn an_hpe_nodes_volume_and_sas_disks_are_named_as_udev_named_them() {
    let r = Root::new();
    let lv = "pci0000:00/0000:00:03.0/0000:04:00.0/host1/target1:1:0/1:1:0:0";
    r.block(&format!("{lv}/block"), "sda", 480 * GB, true);
    r.inquiry(lv, "HP", "LOGICAL VOLUME");
    r.scsi(lv, "vpd_pg80", vpd80("50014380212E90E0"));
    r.scsi(
        lv,
        "vpd_pg83",
        vpd83(&[naa("600508b1001ca98d5d765bea5a0dd3fa")]),
    );
    let hba = "pci0000:00/0000:00:02.0/0000:03:00.0/host0/port-0:0";
    for (i, name, disk_wwn, port, serial) in [
        (
            0,
            "sdb",
            "5000c50093fddc5f",
            "0x5000c50093fddc5d",
            "ZA17WDAG",
        ),
        (
            1,
            "sdc",
            "5000c50093fdd0a3",
            "0x5000c50093fdd0a1",
            "ZA17WDXX",
        ), // derived
    ] {
        let end = format!("{hba}/end_device-0:{i}");
        r.file(
            &format!("sys/devices/{end}/sas_device/end_device-0:{i}/sas_address"),
            format!("{port}\n"),
        );
        let dev = format!("{end}/target0:0:{i}/0:0:{i}:0");
        r.block(&format!("{dev}/block"), name, 8000 * GB, true);
        r.inquiry(&dev, "HP", "MB8000JFECQ");
        r.scsi(&dev, "vpd_pg80", vpd80(serial));
        // The logical unit's NAA, then the target port's (association 1), which names the
        // port, not the disk.
        let mut port_naa = naa(port.trim_start_matches("0x"));
        port_naa.0 = 1;
        r.scsi(&dev, "vpd_pg83", vpd83(&[port_naa, naa(disk_wwn)]));
    }
    assert_eq!(udev_disks(&r), sorted(hpe_node()));
    let inspection = inspect(r.path());
    assert_eq!(inspection.disks[1].serial, "ZA17WDAG");
    assert_eq!(inspection.disks[1].id_wwn, "0x5000c50093fddc5f");
    assert_eq!(inspection.disks[0].id_wwn, "0x600508b1001ca98d");
}

/// SAS disks behind one-phy ports, on the HBA and on an expander: `path_id` names the phy
/// (systemd's `handle_scsi_sas`), where a wide port gets the end device's address as above.
/// Addresses: an LSI SAS3008 (mpt3sas) and a Broadcom expander's, derived.
#[test]
fn sas_disks_on_one_phy_ports_are_named_by_phy_and_expander() {
    let r = Root::new();
    let hba = "pci0000:00/0000:00:01.0/0000:01:00.0/host0";
    // Direct: port-0:0 (one phy) → end_device-0:0, phy 2.
    r.file(
        &format!("sys/devices/{hba}/port-0:0/sas_port/port-0:0/num_phys"),
        "1\n",
    );
    let end = format!("{hba}/port-0:0/end_device-0:0");
    r.file(
        &format!("sys/devices/{end}/sas_device/end_device-0:0/phy_identifier"),
        "2\n",
    );
    let dev = format!("{end}/target0:0:0/0:0:0:0");
    r.block(&format!("{dev}/block"), "sda", 8000 * GB, true);
    r.inquiry(&dev, "SEAGATE", "ST8000NM0075");
    r.scsi(&dev, "vpd_pg83", vpd83(&[naa("5000c500a1b2c3d4")]));
    // Behind an expander: port-0:1 (wide, to the expander) → expander-0:0 → port-0:0:7 (one
    // phy) → end_device-0:0:7, phy 7.
    let exp = format!("{hba}/port-0:1/expander-0:0");
    r.file(
        &format!("sys/devices/{hba}/port-0:1/sas_port/port-0:1/num_phys"),
        "4\n",
    );
    r.file(
        &format!("sys/devices/{exp}/sas_device/expander-0:0/sas_address"),
        "0x500056b36789abff\n",
    );
    r.file(
        &format!("sys/devices/{exp}/port-0:0:7/sas_port/port-0:0:7/num_phys"),
        "1\n",
    );
    let end = format!("{exp}/port-0:0:7/end_device-0:0:7");
    r.file(
        &format!("sys/devices/{end}/sas_device/end_device-0:0:7/phy_identifier"),
        "7\n",
    );
    let dev = format!("{end}/target0:0:1/0:0:1:0");
    r.block(&format!("{dev}/block"), "sdb", 8000 * GB, true);
    r.inquiry(&dev, "SEAGATE", "ST8000NM0075");
    r.scsi(&dev, "vpd_pg83", vpd83(&[naa("5000c500a1b2c3e8")]));
    let paths: Vec<String> = inspect(r.path())
        .disks
        .into_iter()
        .map(|d| d.id_path)
        .collect();
    assert_eq!(
        paths,
        [
            "pci-0000:01:00.0-sas-phy2-lun-0",
            "pci-0000:01:00.0-sas-exp0x500056b36789abff-phy7-lun-0",
        ]
    );
}

#[test]
fn nvme_drives_behind_vmd_are_named_by_both_pci_hops() {
    let r = Root::new();
    for (i, port, bus, serial) in [
        (0, "06", "e1", "12KFC0BAFTW5"),
        (1, "07", "e2", "12KFC0BAFTX2"),
    ] {
        let ctrl = format!(
            "pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:{port}.0/10000:{bus}:00.0/nvme/nvme{i}"
        );
        let ns = r.block(&ctrl, &format!("nvme{i}n1"), 2048 * GB, false);
        r.file(&format!("{ns}/nsid"), "1\n");
        r.file(
            &format!("sys/devices/{ctrl}/model"),
            format!("{:<40}\n", "KXG70PNV2T04 NVMe KIOXIA 2048GB"),
        );
        r.file(
            &format!("sys/devices/{ctrl}/serial"),
            format!("{serial:<20}\n"),
        );
    }
    assert_eq!(udev_disks(&r), sorted(nvme_twins()));
}

#[test]
fn perc_volumes_and_qemu_disks_are_named_as_udev_named_them() {
    let r = Root::new();
    for (i, name, wwn, size) in [
        (0, "sda", "6c81f660dba9cc002fedeb53d8986a2b", 2000 * GB),
        (1, "sdb", "6c81f660dba9cc002ffb0029198533d2", 500 * GB),
    ] {
        let dev = format!("pci0000:00/0000:00:02.0/0000:03:00.0/host0/target0:2:{i}/0:2:{i}:0");
        r.block(&format!("{dev}/block"), name, size, true);
        r.inquiry(&dev, "DELL", "PERC H710");
        r.scsi(&dev, "vpd_pg83", vpd83(&[naa(wwn)]));
    }
    assert_eq!(udev_disks(&r), sorted(perc_node()));

    let r = Root::new();
    let vda = r.block(
        "pci0000:00/0000:00:04.0/virtio1/block",
        "vda",
        20 * GB,
        true,
    );
    r.file(&format!("{vda}/serial"), "seed-os-disk");
    // QEMU's scsi-hd: VPD 0x83 carries its device_id (the serial) as a vendor-specific
    // ASCII designator; virtio-scsi's host numbers follow the virtio-blk disks'.
    let dev = "pci0000:00/0000:00:1c.0/0000:03:00.0/virtio2/host2/target2:0:0/2:0:0:0";
    r.block(&format!("{dev}/block"), "sda", 20 * GB, true);
    r.inquiry(dev, "QEMU", "QEMU HARDDISK");
    r.scsi(dev, "vpd_pg80", vpd80("disk1"));
    r.scsi(dev, "vpd_pg83", vpd83(&[(0, 0, 2, b"disk1".to_vec())]));
    assert_eq!(udev_disks(&r), sorted(qemu_node()));
}

#[test]
fn an_ata_disks_wwn_is_read_where_identify_says_it_is_valid() {
    let r = Root::new();
    let dev = "pci0000:00/0000:00:17.0/ata3/host2/target2:0:0/2:0:0:0";
    r.block(&format!("{dev}/block"), "sda", 480 * GB, false);
    r.inquiry(dev, "ATA", "SAMSUNG MZ7L3480");
    r.scsi(
        dev,
        "vpd_pg89",
        vpd89(
            "SAMSUNG MZ7L3480HCHQ-00A07",
            "S664NE0R123456",
            Some(0x5002_538f_4123_4567),
        ),
    );
    let disk = &inspect(r.path()).disks[0];
    // The full 40-character model from IDENTIFY, not the 16 of the SCSI inquiry; the port
    // number from the name when ata_port has none (ata3 → 3).
    assert_eq!(disk.id_model, "SAMSUNG_MZ7L3480HCHQ-00A07");
    assert_eq!(disk.id_serial, "SAMSUNG_MZ7L3480HCHQ-00A07_S664NE0R123456");
    assert_eq!(disk.id_wwn, "0x5002538f41234567");
    assert_eq!(disk.id_path, "pci-0000:00:17.0-ata-3.0");
}

#[test]
fn the_machine_nics_cpu_memory_and_firmware_are_read() {
    let r = Root::new();
    // A PowerEdge R650: two Broadcom LOM ports (tg3), a ConnectX-6 Lx (mlx5_core); one
    // port a bond member whose `address` is the bond's. MACs derived (Dell's OUI).
    for (name, pci, driver, mac, carrier, speed) in [
        (
            "eth0",
            "0000:04:00.0",
            "tg3",
            "b0:7b:25:de:1a:20",
            Some("1"),
            "1000",
        ),
        (
            "eth1",
            "0000:04:00.1",
            "tg3",
            "b0:7b:25:de:1a:21",
            Some("0"),
            "-1",
        ),
        (
            "eth2",
            "0000:31:00.0",
            "mlx5_core",
            "0c:42:a1:5e:30:f0",
            Some("1"),
            "25000",
        ),
        (
            "eth3",
            "0000:31:00.1",
            "mlx5_core",
            "0c:42:a1:5e:30:f1",
            None,
            "-1",
        ),
    ] {
        let dev = format!("pci0000:30/0000:30:02.0/{pci}");
        r.link(
            &format!("sys/devices/{dev}/driver"),
            &format!("../../../../bus/pci/drivers/{driver}"),
        );
        std::fs::create_dir_all(r.path().join(format!("sys/bus/pci/drivers/{driver}"))).unwrap();
        let net = format!("sys/devices/{dev}/net/{name}");
        r.file(&format!("{net}/address"), format!("{mac}\n"));
        if let Some(c) = carrier {
            r.file(&format!("{net}/carrier"), format!("{c}\n"));
        }
        r.file(&format!("{net}/speed"), format!("{speed}\n"));
        r.link(
            &format!("{net}/device"),
            "../../../{pci}".replace("{pci}", pci).as_str(),
        );
        r.link(
            &format!("sys/class/net/{name}"),
            &format!("../../devices/{dev}/net/{name}"),
        );
    }
    r.file(
        "sys/devices/pci0000:30/0000:30:02.0/0000:31:00.0/net/eth2/address",
        "0c:42:a1:5e:30:f1\n",
    );
    r.file(
        "sys/devices/pci0000:30/0000:30:02.0/0000:31:00.0/net/eth2/bonding_slave/perm_hwaddr",
        "0c:42:a1:5e:30:f0\n",
    );
    // A lab machine's virtio NIC: its device is `virtio0`, the PCI function above it.
    let virtio = "pci0000:00/0000:00:03.0/virtio0";
    r.link(
        &format!("sys/devices/{virtio}/driver"),
        "../../../../bus/virtio/drivers/virtio_net",
    );
    std::fs::create_dir_all(r.path().join("sys/bus/virtio/drivers/virtio_net")).unwrap();
    r.file(
        &format!("sys/devices/{virtio}/net/eth4/address"),
        "52:54:00:10:00:11\n",
    );
    r.link(
        &format!("sys/devices/{virtio}/net/eth4/device"),
        "../../../virtio0",
    );
    r.link(
        "sys/class/net/eth4",
        &format!("../../devices/{virtio}/net/eth4"),
    );
    r.file(
        "sys/devices/virtual/net/bond0/address",
        "0c:42:a1:5e:30:f1\n",
    );
    r.link("sys/class/net/bond0", "../../devices/virtual/net/bond0");
    r.file("sys/devices/virtual/net/lo/address", "00:00:00:00:00:00\n");
    r.link("sys/class/net/lo", "../../devices/virtual/net/lo");

    r.file("sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
    r.file("sys/class/dmi/id/product_name", "PowerEdge R650\n");
    r.file("sys/class/dmi/id/product_serial", "7XKQ2T3\n"); // derived
    r.file(
        "sys/class/dmi/id/product_uuid",
        "4C4C4544-0058-4B10-8051-B7C04F325433\n", // Dell's form: "DELL" + the service tag
    );
    r.file(
        &format!("sys/firmware/efi/efivars/{SECURE_BOOT_VAR}"),
        [0x06, 0, 0, 0, 1],
    );
    let mut cpuinfo = String::new();
    for n in 0..4 {
        cpuinfo.push_str(&format!(
            "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nphysical id\t: {}\n\n",
            n / 2
        ));
    }
    r.file("proc/cpuinfo", cpuinfo);
    r.file(
        "proc/meminfo",
        "MemTotal:       263567108 kB\nMemFree:        1000 kB\n",
    );

    let inspection = inspect(r.path());
    let nics: Vec<_> = inspection
        .nics
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.mac.to_string(),
                n.driver.as_deref(),
                n.pci.as_deref(),
                n.link,
                n.speed_mbps,
            )
        })
        .collect();
    assert_eq!(
        nics,
        [
            (
                "eth0",
                "b0:7b:25:de:1a:20".into(),
                Some("tg3"),
                Some("0000:04:00.0"),
                Some(true),
                Some(1000)
            ),
            (
                "eth1",
                "b0:7b:25:de:1a:21".into(),
                Some("tg3"),
                Some("0000:04:00.1"),
                Some(false),
                None
            ),
            (
                "eth2",
                "0c:42:a1:5e:30:f0".into(),
                Some("mlx5_core"),
                Some("0000:31:00.0"),
                Some(true),
                Some(25000)
            ),
            (
                "eth3",
                "0c:42:a1:5e:30:f1".into(),
                Some("mlx5_core"),
                Some("0000:31:00.1"),
                None,
                None
            ),
            (
                "eth4",
                "52:54:00:10:00:11".into(),
                Some("virtio_net"),
                Some("0000:00:03.0"),
                None,
                None
            ),
        ]
    );
    assert_eq!(inspection.system.vendor.as_deref(), Some("Dell Inc."));
    assert_eq!(inspection.system.product.as_deref(), Some("PowerEdge R650"));
    assert_eq!(
        inspection.system.uuid.as_deref(),
        Some("4c4c4544-0058-4b10-8051-b7c04f325433")
    );
    assert_eq!(
        inspection.firmware,
        Firmware {
            mode: BootMode::Uefi,
            secure_boot: Some(true)
        }
    );
    assert_eq!(inspection.cpu.threads, 4);
    assert_eq!(inspection.cpu.sockets, 2);
    assert_eq!(
        inspection.cpu.model.as_deref(),
        Some("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz")
    );
    assert_eq!(inspection.memory_bytes, Some(263567108 * 1024));

    // BIOS: no efi directory, no Secure Boot state.
    let bios = Root::new();
    assert_eq!(inspect(bios.path()).firmware, Firmware::default());
}
