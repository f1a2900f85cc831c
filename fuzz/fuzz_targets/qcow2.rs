//! See `images::qcow2::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| images::qcow2::fuzz(data));
