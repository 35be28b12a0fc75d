//! Everything that talks to SQLite: opening databases at the right trust level, what they hold
//! ([`db`]), what their integrity checks found ([`findings`]), consistent snapshots of a live
//! database ([`snapshot`]) with the catch-up checkpoint after one (`catchup`), and the page
//! hashes incremental backups are built from ([`pageset`]).
//!
//! This layer knows no archive, location or operation: it depends only on [`crate::model`],
//! [`crate::error`] and the file-system helpers.

pub(crate) mod catchup;
pub mod db;
pub mod findings;
pub mod pageset;
pub mod snapshot;
pub mod wal;
