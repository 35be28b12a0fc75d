//! litevault: safe, fast, verifiable backups of SQLite databases, and restores that cannot lose
//! data.
//!
//! The library does the work and returns reports; it never prints. Each operation takes a
//! [`Context`] (keys, threads, priority), an options struct and a [`Progress`] receiver and returns a serde-serializable report:
//!
//! - [`backup`]: a consistent snapshot of a live database into a compressed archive
//!   (`tar` + zstd/gzip) with a JSON manifest and SHA-256 checksums.
//! - [`list`] / [`read_manifest`]: find archives and read their manifests (only the head of each
//!   archive is read).
//! - [`verify`]: prove an archive or a database intact, check by check.
//! - [`restore`] / [`plan_restore`]: guarded, verified, atomic restore.
//! - SQL dumps ([`format::dump`]): `BackupOptions { format: Format::Sql(..), .. }` writes an exact,
//!   deterministic SQL dump; `restore` and `verify` accept dumps (any SQL dump is loaded as
//!   untrusted input).
//! - Locations ([`location`]): every path above may be a local one or `s3://bucket/prefix/...`
//!   (S3-compatible object storage); [`ops::prune`] applies retention, [`ops::copy`] moves archives
//!   between locations.
//! - Incremental backups ([`ops::chain`], [`sqlite::pageset`]): [`Format::Archive`] with [`ArchiveOptions::incremental`]
//!   stores only the pages changed since the newest backup of the same name; restore composes
//!   the chain.
//! - Files beside the database ([`format::files`]): [`ArchiveOptions::include`] adds a
//!   directory's files to the archive; `RestoreOptions { files_to: Some(out), .. }` puts them
//!   back under `out` once the database has passed its checks.
//!
//! The modules are layers, each importing only those below it (checked in CI): [`model`] and
//! [`error`] (data, no I/O), the helpers [`fsutil`], [`progress`] and [`priority`], then
//! [`sqlite`] and [`location`], [`format`](mod@format), [`ops`], the daemon ([`serve`], feature `serve`)
//! and the command line (`cli`, feature `cli`).
//!
//! ```
//! use litevault::{backup, restore, verify, BackupOptions, Context, Destination, RestoreOptions, VerifyOptions, NoProgress};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("app.db");
//! let conn = rusqlite::Connection::open(&db)?;
//! conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('hello');")?;
//!
//! // A consistent snapshot, even though `conn` stays open.
//! let opts = BackupOptions { destination: Destination::dir(dir.path().join("backups")), ..Default::default() };
//! // What every operation runs with: keys for encrypted backups, threads, priority.
//! let ctx = Context::new();
//! let report = backup(&ctx, &db, &opts, &NoProgress)?;
//! assert!(report.archive.to_string_lossy().ends_with(".tar.zst"));
//!
//! // Every check by name: checksums, manifest, integrity_check, foreign keys, FTS.
//! let checks = verify(&ctx, &report.archive, &VerifyOptions::default(), &NoProgress)?;
//! assert!(checks.ok);
//!
//! // Restore to a new file (an existing one needs `overwrite: true`).
//! let copy = dir.path().join("copy.db");
//! let restored = restore(&ctx, &report.archive, &copy, &RestoreOptions::default(), &NoProgress)?;
//! assert!(restored.restored);
//! let body: String = rusqlite::Connection::open(&copy)?.query_row("SELECT body FROM notes", [], |r| r.get(0))?;
//! assert_eq!(body, "hello");
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

pub mod error;
pub mod fsutil;
pub mod model;
pub mod priority;
pub mod progress;

pub mod format;
pub mod location;
pub mod sqlite;

pub mod ops;
#[cfg(feature = "serve")]
pub mod serve;

#[cfg(feature = "cli")]
pub mod cli;

pub use error::{Error, ErrorClass, Result};
pub use format::archive::Compression;
pub use format::dump::read_manifest;
pub use format::dump::write::Selection;
pub use format::manifest::Manifest;
pub use ops::backup::{
    backup, default_backup_dir, ArchiveOptions, BackupOptions, BackupReport, Destination, Format,
};
pub use ops::list::{list, ArchiveSummary};
pub use ops::restore::{plan_restore, restore, RestoreOptions, RestorePlan, RestoreReport, Strategy};
pub use ops::verify::{verify, VerifyOptions, VerifyReport};
pub use ops::Context;
pub use progress::{NoProgress, Phase, Progress};
pub use sqlite::db::{Check, CheckStatus, Reindex};
pub use sqlite::findings::{Finding, ProblemClass};
pub use sqlite::snapshot::Method;
