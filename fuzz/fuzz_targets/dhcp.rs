//! See `seed::fuzzing::dhcp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::dhcp(data));
