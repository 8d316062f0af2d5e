//! See `logbook_testkit::wal_ops` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_testkit::wal_ops(data));
