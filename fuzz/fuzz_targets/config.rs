//! See `seed::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::config(data));
