//! The iPXE binaries seed serves, embedded at build time (see `ipxe/firmware/README.md`).

/// One embedded binary.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// File name as firmware asks for it.
    pub name: &'static str,
    /// The bytes.
    pub bytes: &'static [u8],
}

/// Every binary seed carries.
pub const BINARIES: [Binary; 3] = [
    Binary {
        name: "undionly.kpxe",
        bytes: include_bytes!("../firmware/undionly.kpxe"),
    },
    Binary {
        name: "ipxe.efi",
        bytes: include_bytes!("../firmware/ipxe.efi"),
    },
    Binary {
        name: "snponly.efi",
        bytes: include_bytes!("../firmware/snponly.efi"),
    },
];

/// The SHA-256 of each binary, as recorded when it was taken from Debian.
pub const SHA256SUMS: &str = include_str!("../firmware/SHA256SUMS");

/// The Debian package version the binaries come from.
pub const VERSION: &str = include_str!("../firmware/VERSION");

/// The recorded SHA-256 (lowercase hex) of the binary named `name`.
pub fn sha256(name: &str) -> Option<&'static str> {
    SHA256SUMS.lines().find_map(|l| {
        l.split_once("  ")
            .filter(|(_, n)| *n == name)
            .map(|(h, _)| h)
    })
}

/// The binary named `name`, if seed carries it.
pub fn binary(name: &str) -> Option<&'static [u8]> {
    BINARIES.iter().find(|b| b.name == name).map(|b| b.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn embedded_binaries_match_their_recorded_hashes() {
        for b in BINARIES {
            let recorded =
                sha256(b.name).unwrap_or_else(|| panic!("{} missing from SHA256SUMS", b.name));
            let actual: String = Sha256::digest(b.bytes)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            assert_eq!(actual, recorded, "{}", b.name);
        }
    }

    #[test]
    fn every_binary_the_firmware_mapping_names_is_carried() {
        use crate::ClientArch;
        for arch in [0, 7, 9, 16] {
            for snp in [false, true] {
                let name = ClientArch::from_arch(arch).binary(snp).unwrap();
                assert!(binary(name).is_some(), "{name}");
            }
        }
        // undionly.kpxe is a PXE ROM image; the EFI binaries are PE files.
        assert_eq!(&binary("ipxe.efi").unwrap()[..2], b"MZ");
        assert_eq!(&binary("snponly.efi").unwrap()[..2], b"MZ");
        assert!(binary("ipxe.pxe").is_none());
    }
}
