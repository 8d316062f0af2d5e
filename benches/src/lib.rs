//! # logbook-benches
//!
//! The criterion benchmarks live in `benches/` (`bus`, `append`); the
//! `compare` binary prints one Markdown table of the `append` baselines.
//!
//! This library holds what they share: [`baselines`], three "durable append"
//! implementations that Logbook's own WAL is measured against, and the
//! multi-threaded driver [`baselines::run_threads`]; and [`logbook`], Logbook's
//! own WAL behind the same trait.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod baselines;
pub mod fixtures;
pub mod logbook;
