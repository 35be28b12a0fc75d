//! The operations, one module each: [`backup`], [`restore`] (plan, then apply), [`verify`],
//! [`list`], [`copy`], [`prune`], [`merge`], and the incremental [`chain`] they share.
//!
//! Each takes its options and a [`crate::Progress`] receiver and returns a serializable report;
//! none prints. Operations orchestrate the layers below (snapshot from [`crate::sqlite`],
//! streams from [`crate::format`], objects in a [`crate::location`]) and may call each other
//! (a restore's safety backup is a backup); the daemon and the command line sit above them.

pub mod backup;
pub mod chain;
mod context;
pub mod copy;
pub mod hook;
pub mod list;
pub mod merge;
pub mod prune;
pub mod replica;
pub mod replica_verify;
pub mod replicate;
pub mod restore;
pub mod verify;

pub use context::Context;

#[cfg(test)]
mod tests;
