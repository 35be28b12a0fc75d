//! litevault: safe, fast, verifiable backups of SQLite databases, and restores that cannot lose
//! data.
//!
//! The library does the work and returns reports; it never prints. Each operation takes an
//! options struct and a [`Progress`] receiver and returns a serde-serializable report:
//!
//! - [`backup`]: a consistent snapshot of a live database into a compressed archive
//!   (`tar` + zstd/gzip) with a JSON manifest and SHA-256 checksums.
//! - [`list`] / [`read_manifest`]: find archives and read their manifests (only the head of each
//!   archive is read).
//! - [`verify`]: prove an archive or a database intact, check by check.
//! - [`restore`] / [`plan_restore`]: guarded, verified, atomic restore.
//! - SQL dumps ([`dump`]): `BackupOptions { format: Format::Sql, .. }` writes an exact,
//!   deterministic SQL dump; `restore` and `verify` accept dumps (any SQL dump is loaded as
//!   untrusted input).
//! - Locations ([`location`]): every path above may be a local one or `s3://bucket/prefix/...`
//!   (S3-compatible object storage); [`prune`] applies retention, [`copy`] moves archives
//!   between locations.
//! - Incremental backups ([`chain`], [`pageset`]): `BackupOptions { incremental: true, .. }`
//!   stores only the pages changed since the newest backup of the same name; restore composes
//!   the chain.
//! - Files beside the database ([`files`]): `BackupOptions { include: vec![dir], .. }` adds a
//!   directory's files to the archive; `RestoreOptions { files_to: Some(out), .. }` puts them
//!   back under `out` once the database has passed its checks.
//!
//! ```
//! use litevault::{backup, restore, verify, BackupOptions, RestoreOptions, VerifyOptions, NoProgress};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("app.db");
//! let conn = rusqlite::Connection::open(&db)?;
//! conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('hello');")?;
//!
//! // A consistent snapshot, even though `conn` stays open.
//! let opts = BackupOptions { dir: Some(dir.path().join("backups")), ..Default::default() };
//! let report = backup(&db, &opts, &NoProgress)?;
//! assert!(report.archive.to_string_lossy().ends_with(".tar.zst"));
//!
//! // Every check by name: checksums, manifest, integrity_check, foreign keys, FTS.
//! let checks = verify(&report.archive, &VerifyOptions::default(), &NoProgress)?;
//! assert!(checks.ok);
//!
//! // Restore to a new file (an existing one needs `overwrite: true`).
//! let copy = dir.path().join("copy.db");
//! let restored = restore(&report.archive, &copy, &RestoreOptions::default(), &NoProgress)?;
//! assert!(restored.restored);
//! let body: String = rusqlite::Connection::open(&copy)?.query_row("SELECT body FROM notes", [], |r| r.get(0))?;
//! assert_eq!(body, "hello");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

pub mod archive;
pub mod backup;
mod catchup;
pub mod chain;
pub mod copy;
pub mod crypt;
pub mod db;
pub mod dump;
pub mod error;
pub mod files;
pub mod findings;
pub mod fsutil;
pub mod list;
pub mod location;
pub mod manifest;
pub mod merge;
pub mod model;
pub mod pageset;
pub mod priority;
pub mod progress;
pub mod prune;
pub mod restore;
#[cfg(feature = "serve")]
pub mod serve;
pub mod snapshot;
pub mod verify;

pub use archive::Compression;
pub use backup::{backup, default_backup_dir, BackupOptions, BackupReport, Format};
pub use db::{Check, CheckStatus, Reindex};
pub use dump::read_manifest;
pub use error::{Error, ErrorClass, Result};
pub use findings::{Finding, ProblemClass};
pub use list::{list, ArchiveSummary};
pub use manifest::Manifest;
pub use progress::{NoProgress, Phase, Progress};
pub use restore::{plan_restore, restore, RestoreOptions, RestorePlan, RestoreReport, Strategy};
pub use snapshot::Method;
pub use verify::{verify, VerifyOptions, VerifyReport};

#[cfg(test)]
mod lib_tests;
