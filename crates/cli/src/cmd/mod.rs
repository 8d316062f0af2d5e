//! One module per subcommand.

pub(crate) mod demo;
pub(crate) mod dump;
pub(crate) mod repair;
pub(crate) mod stats;
pub(crate) mod verify;
