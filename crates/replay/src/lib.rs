//! logbook-replay: filled by its own issue; nothing here yet.
#![forbid(unsafe_code)]
