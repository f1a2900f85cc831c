//! See `seed::fuzzing::tftp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::tftp(data));
