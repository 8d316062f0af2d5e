//! See `logbook_testkit::decode_record` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_testkit::decode_record(data));
