//! iPXE: which boot binary a firmware gets, the binaries themselves, and the scripts seed
//! hands a booting node. Pure: no I/O.
//!
//! The firmware kind comes from DHCP option 93 (client system architecture, RFC 4578; values in
//! IANA's "Processor Architecture Types" registry). seed answers only kinds it carries a binary
//! for: handing a 32-bit UEFI or ARM machine the x64 binary fails late and obscurely, so those get
//! no answer and a log line instead.

pub mod binaries;
pub mod script;

use std::fmt;

/// The client system architecture a network-booting client names in DHCP option 93 (RFC 4578
/// 2.1; IANA's processor architecture types): which firmware asks, and so which iPXE binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientArch {
    /// 0: x86 legacy BIOS PXE.
    Bios,
    /// 6: 32-bit x86 UEFI.
    UefiIa32,
    /// 7 (and 9, which EDK2 sent for years by mistake): x64 UEFI PXE.
    UefiX64,
    /// 16: x64 UEFI HTTP boot.
    UefiX64Http,
    /// 10: 32-bit ARM UEFI.
    UefiArm32,
    /// 11: 64-bit ARM UEFI.
    UefiArm64,
    /// 19: 64-bit ARM UEFI HTTP boot.
    UefiArm64Http,
    /// Anything else.
    Other(u16),
}

impl ClientArch {
    /// The firmware for an option 93 value.
    pub fn from_arch(arch: u16) -> Self {
        match arch {
            0 => Self::Bios,
            6 => Self::UefiIa32,
            7 | 9 => Self::UefiX64,
            10 => Self::UefiArm32,
            11 => Self::UefiArm64,
            16 => Self::UefiX64Http,
            19 => Self::UefiArm64Http,
            other => Self::Other(other),
        }
    }

    /// Whether the firmware boots over HTTP (no TFTP; the DHCP answer is a URL and must echo
    /// `HTTPClient` in option 60).
    pub fn is_http(self) -> bool {
        matches!(self, Self::UefiX64Http | Self::UefiArm64Http)
    }

    /// The iPXE binary seed serves to this firmware, if it carries one.
    ///
    /// `snp` chooses `snponly.efi` (iPXE over the firmware's own network driver, which works on
    /// NICs iPXE has no driver for) instead of `ipxe.efi` for UEFI.
    pub fn binary(self, snp: bool) -> Option<&'static str> {
        match self {
            Self::Bios => Some(BIOS_BINARY),
            Self::UefiX64 | Self::UefiX64Http if snp => Some("snponly.efi"),
            Self::UefiX64 | Self::UefiX64Http => Some("ipxe.efi"),
            _ => None,
        }
    }
}

/// The BIOS binary: iPXE over the PXE ROM's UNDI driver, which works with any PXE NIC.
pub const BIOS_BINARY: &str = "undionly.kpxe";

impl fmt::Display for ClientArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bios => f.write_str("BIOS (arch 0)"),
            Self::UefiIa32 => f.write_str("32-bit x86 UEFI (arch 6)"),
            Self::UefiX64 => f.write_str("x64 UEFI (arch 7)"),
            Self::UefiX64Http => f.write_str("x64 UEFI HTTP boot (arch 16)"),
            Self::UefiArm32 => f.write_str("32-bit ARM UEFI (arch 10)"),
            Self::UefiArm64 => f.write_str("64-bit ARM UEFI (arch 11)"),
            Self::UefiArm64Http => f.write_str("64-bit ARM UEFI HTTP boot (arch 19)"),
            Self::Other(n) => write!(f, "architecture {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_firmware_gets_the_matching_binary() {
        assert_eq!(
            ClientArch::from_arch(0).binary(false),
            Some("undionly.kpxe")
        );
        assert_eq!(ClientArch::from_arch(7).binary(false), Some("ipxe.efi"));
        assert_eq!(ClientArch::from_arch(9).binary(false), Some("ipxe.efi"));
        assert_eq!(ClientArch::from_arch(7).binary(true), Some("snponly.efi"));
        assert_eq!(ClientArch::from_arch(16).binary(false), Some("ipxe.efi"));
        assert!(ClientArch::from_arch(16).is_http());
        assert!(!ClientArch::from_arch(7).is_http());
    }

    #[test]
    fn firmware_seed_carries_nothing_for_gets_nothing() {
        for arch in [6, 10, 11, 19, 2, 0xffff] {
            assert_eq!(
                ClientArch::from_arch(arch).binary(false),
                None,
                "arch {arch}"
            );
        }
        assert_eq!(
            ClientArch::from_arch(6).to_string(),
            "32-bit x86 UEFI (arch 6)"
        );
    }
}
