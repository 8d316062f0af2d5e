//! # logbook-testkit: the fuzz targets, as ordinary functions
//!
//! Every fuzz target of `fuzz/` is one function here taking the fuzzer's
//! bytes, `fn(&[u8])`, that panics when an invariant breaks. The fuzz
//! crate (its own workspace, built by `cargo fuzz`) wraps each one in a
//! one-line `fuzz_target!`, and this crate's `tests/corpus.rs` runs every
//! file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through
//! the same function under plain `cargo test`, so an input the fuzzer once
//! found keeps being checked without `cargo fuzz`.
//!
//! | target | input | asserts |
//! | --- | --- | --- |
//! | [`decode_record`] | a record frame | a valid frame re-encodes to the same bytes; lengths are bounded |
//! | [`open_segment`] | a segment file | readers and recovery return only CRC-valid records, in LSN order |
//! | [`event_roundtrip`] | an event, and raw bytes | the codec round-trips, and is canonical |
//! | [`replay_reduce`] | a session's events | token totals are sums; pending = started − completed |
//! | [`wal_ops`] | appends, syncs, crashes | every acknowledged record survives |
//!
//! [`TARGETS`] lists them by name; [`seeds`] builds the committed seed
//! corpus.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod decode_record;
mod encode;
mod event_roundtrip;
mod open_segment;
mod replay_reduce;
mod seeds;
mod wal_ops;

pub use crate::decode_record::decode_record;
pub use crate::event_roundtrip::event_roundtrip;
pub use crate::open_segment::open_segment;
pub use crate::replay_reduce::replay_reduce;
pub use crate::seeds::seeds;
pub use crate::wal_ops::wal_ops;

/// A fuzz target: the fuzzer's bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and of
/// its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_record", decode_record),
    ("open_segment", open_segment),
    ("event_roundtrip", event_roundtrip),
    ("replay_reduce", replay_reduce),
    ("wal_ops", wal_ops),
];

/// The target called `name`, if there is one.
#[must_use]
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
