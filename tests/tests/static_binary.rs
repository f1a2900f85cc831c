//! The seed binary is static: no ELF interpreter, so it runs on a fresh seed host as one file.
//! (`.ci/run` checks the release build with `file` and `ldd` as well.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use common::seed_bin;

/// Program header type of the dynamic loader path (`/lib64/ld-linux-x86-64.so.2`).
const PT_INTERP: u32 = 3;

#[test]
fn the_seed_binary_has_no_dynamic_loader() {
    let elf = std::fs::read(seed_bin()).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    // ELF64 header: e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38.
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38));
    let types: Vec<u32> = (0..phnum as usize)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
        })
        .collect();
    assert!(!types.is_empty());
    assert!(
        !types.contains(&PT_INTERP),
        "seed is dynamically linked (has PT_INTERP); is .cargo/config.toml's crt-static in effect?"
    );
}
