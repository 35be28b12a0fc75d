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
//!
//! ```no_run
//! use litevault::{backup, restore, BackupOptions, RestoreOptions, NoProgress};
//! let report = backup("app.db".as_ref(), &BackupOptions::default(), &NoProgress)?;
//! let restored = restore(&report.archive, "copy.db".as_ref(), &RestoreOptions::default(), &NoProgress)?;
//! assert!(restored.restored);
//! # Ok::<(), litevault::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]

pub mod archive;
pub mod backup;
pub mod db;
pub mod error;
pub mod fsutil;
pub mod list;
pub mod manifest;
pub mod progress;
pub mod restore;
pub mod snapshot;
pub mod verify;

pub use archive::{read_manifest, Compression};
pub use backup::{backup, default_backup_dir, BackupOptions, BackupReport};
pub use db::{Check, CheckStatus};
pub use error::{Error, ErrorClass, Result};
pub use list::{list, ArchiveSummary};
pub use manifest::Manifest;
pub use progress::{NoProgress, Progress};
pub use restore::{plan_restore, restore, RestoreOptions, RestorePlan, RestoreReport, Strategy};
pub use snapshot::Method;
pub use verify::{verify, VerifyOptions, VerifyReport};
