//! See `logbook_testkit::replay_reduce` for what this target asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| logbook_testkit::replay_reduce(data));
