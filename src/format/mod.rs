//! The formats litevault writes and reads: the archive container (tar + zstd/gzip, manifest,
//! checksums), the manifest itself, SQL dumps (writer and untrusted loader), age encryption and
//! the files kept beside a database.
//!
//! This layer turns a snapshot and its metadata into a byte stream and back. It sits above
//! [`crate::sqlite`] (a dump is written from, and loaded into, a SQLite connection) and
//! [`crate::location`] (its streams go into a location's new object and come from its readers),
//! and below [`crate::ops`], which decides what to write where. It never chooses a location,
//! a name or a policy.

pub mod archive;
pub mod crypt;
pub mod dump;
pub mod files;
pub mod manifest;
pub mod segment;
