//! See `seed::fuzzing::redfish`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| seed::fuzzing::redfish(data));
