//! See `logbook_testkit::event_roundtrip` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_testkit::event_roundtrip(data));
