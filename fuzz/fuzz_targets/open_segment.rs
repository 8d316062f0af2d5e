//! See `logbook_testkit::open_segment` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_testkit::open_segment(data));
