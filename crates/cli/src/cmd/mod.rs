//! One module per subcommand.

pub(crate) mod compact;
pub(crate) mod delete;
pub(crate) mod demo;
pub(crate) mod docs;
pub(crate) mod dump;
pub(crate) mod export;
pub(crate) mod fork;
pub(crate) mod key;
pub(crate) mod repair;
pub(crate) mod replay;
pub(crate) mod resume;
pub(crate) mod retain;
pub(crate) mod sessions;
pub(crate) mod ship;
pub(crate) mod stats;
pub(crate) mod verify;
