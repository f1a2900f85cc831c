//! `seed agent`: what runs on a node that boots seed's deploy ramdisk (issue 21). It inspects
//! the machine from the kernel's own files, reports to seed over HTTP with the node's token,
//! and later cleans and writes disks.
//!
//! The agent has no udev: the ramdisk is seed's static binary and the kernel's modules. So
//! [`inspect`] names each disk the way udev on the installed system would (`ID_SERIAL`,
//! `ID_MODEL`, `ID_PATH`, `ID_WWN`), read from sysfs, so the same disk rules
//! ([`crate::disk`]) select the same disk whether subiquity or the agent applies them.

pub mod configdrive;
pub mod deploy;
pub mod dhcp;
pub mod efiboot;
pub mod init;
pub mod inspect;
pub mod netlink;
pub mod ramdisk;
pub mod wipe;
pub mod write;
