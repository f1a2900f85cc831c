//! See `images::iso9660::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| images::iso9660::fuzz(data));
