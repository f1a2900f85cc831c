//! See `seed::fuzzing::apt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::apt(data));
