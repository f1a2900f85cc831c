//! See `seed::fuzzing::http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::http(data));
