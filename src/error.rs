//! The library's one error type.
//!
//! Every variant names the path it concerns and the operation that failed, so the binary can print
//! `error: <what>: <why>` once and pick an exit code from [`Error::class`] without parsing text.
//! Nothing here prints; rendering and exit codes belong to the binary.

use std::path::{Path, PathBuf};

use crate::model::check::{Check, ProblemClass};

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for callers that map errors to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input, I/O failure, a missing file: the operation could not be done.
    Failed,
    /// Corruption or a checksum mismatch was found: the data cannot be trusted.
    Corrupt,
    /// The operation was refused to protect data (would overwrite, in use, newer schema).
    Refused,
    /// The caller's options do not fit together.
    Usage,
    /// The caller asked the operation to stop ([`crate::Progress::cancelled`]); it stopped,
    /// removed its temp files and published nothing.
    Interrupted,
}

impl ErrorClass {
    /// The exit code the command line gives this class: 1 failed, 2 usage, 3 corrupt, 4 refused,
    /// 130 interrupted (as a shell reports SIGINT).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Failed => 1,
            ErrorClass::Usage => 2,
            ErrorClass::Corrupt => 3,
            ErrorClass::Refused => 4,
            ErrorClass::Interrupted => 130,
        }
    }

    /// Its name in JSON reports: "error", "usage", "corrupt", "refused" or "interrupted".
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Failed => "error",
            ErrorClass::Usage => "usage",
            ErrorClass::Corrupt => "corrupt",
            ErrorClass::Refused => "refused",
            ErrorClass::Interrupted => "interrupted",
        }
    }
}

/// An error as `--json` prints it (and the daemon's API answers it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorReport {
    /// The message, e.g. "app.db: already exists; refusing to replace it".
    pub error: String,
    /// [`ErrorClass::as_str`].
    pub class: String,
    /// What to try, when there is a suggestion.
    pub hint: Option<String>,
    /// The command line's exit code for it.
    pub exit_code: u8,
}

impl From<&Error> for ErrorReport {
    fn from(e: &Error) -> Self {
        ErrorReport {
            error: e.to_string(),
            class: e.class().as_str().to_string(),
            hint: e.hint().map(str::to_string),
            exit_code: e.class().exit_code(),
        }
    }
}

/// Everything that can go wrong in litevault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create temp file in".
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite returned an error.
    #[error("{op} {}: {source}", path.display())]
    Sqlite {
        /// What was being done, e.g. "open database".
        op: &'static str,
        /// The database concerned.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The file is not an SQLite database (or not one litevault can use).
    #[error("{}: not an SQLite database: {reason}", path.display())]
    NotADatabase {
        /// The file concerned.
        path: PathBuf,
        /// Why, e.g. "file is 10 bytes long".
        reason: String,
    },
    /// A file that must exist does not.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// The database failed SQLite's own consistency checks.
    #[error("{}: database is corrupt: {detail}", path.display())]
    CorruptDatabase {
        /// The database concerned.
        path: PathBuf,
        /// The first problems SQLite reported.
        detail: String,
    },
    /// An archive is malformed, truncated, unsafe or of an unknown format.
    #[error("{}: bad archive: {reason}", path.display())]
    BadArchive {
        /// The archive concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive entry does not match its recorded checksum.
    #[error("{}: checksum mismatch for {entry}: expected {expected}, found {actual}", path.display())]
    ChecksumMismatch {
        /// The archive concerned.
        path: PathBuf,
        /// The entry whose content changed.
        entry: String,
        /// The checksum recorded in the archive.
        expected: String,
        /// The checksum of the content read.
        actual: String,
    },
    /// Verification of restored content failed; nothing was swapped in.
    #[error("{}: verification failed: {failed}", path.display())]
    VerificationFailed {
        /// The archive whose content failed.
        path: PathBuf,
        /// The failed checks, by name and detail.
        failed: String,
        /// The most serious class of problem the failed checks found, when they say (it
        /// chooses the hint).
        class: Option<ProblemClass>,
    },
    /// A file would be replaced without `overwrite` (restore target, backup output).
    #[error("{}: already exists; refusing to replace it", path.display())]
    WouldOverwrite {
        /// The existing target.
        path: PathBuf,
    },
    /// The target is in use by another process in a way that makes the operation unsafe.
    #[error("{}: in use by another process: {detail}", path.display())]
    InUse {
        /// The database concerned.
        path: PathBuf,
        /// What was seen.
        detail: String,
    },
    /// The archive's schema version is newer than the database it would replace.
    #[error("{}: archive has schema version (user_version) {archive}, newer than the database's {target}", path.display())]
    NewerSchema {
        /// The target database.
        path: PathBuf,
        /// user_version recorded in the archive.
        archive: i64,
        /// user_version of the existing database.
        target: i64,
    },
    /// Not enough free space for the operation.
    #[error("{}: not enough free space: {needed} bytes needed, {available} available", path.display())]
    NoSpace {
        /// The directory that lacks space.
        path: PathBuf,
        /// Bytes the operation needs.
        needed: u64,
        /// Bytes free for this user.
        available: u64,
    },
    /// A file beside the database cannot be backed up or restored safely: a symlink that
    /// leaves its directory, a special file, a place under a restore directory that is a
    /// symlink or in the way.
    #[error("{}: {reason}", path.display())]
    UnsafeFile {
        /// The file concerned.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The caller passed options that do not fit together.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The caller asked the operation to stop ([`crate::Progress::cancelled`]).
    #[error("cancelled: stopped before it finished; nothing was published and its temp files are removed")]
    Cancelled,
    /// The database was restored, but putting the archive's files in place failed part-way
    /// (the files already renamed stay; the others were removed).
    #[error("{}: the database was restored{}, but putting its files in place failed: {detail}", path.display(), safety_archive.as_ref().map(|p| format!(" (the previous one is kept in {})", p.display())).unwrap_or_default())]
    FilesAfterRestore {
        /// The restored database.
        path: PathBuf,
        /// The safety archive of the database it replaced, if any.
        safety_archive: Option<PathBuf>,
        /// What failed.
        detail: String,
    },
    /// An encrypted backup cannot be read with the keys given (none, or none that fits), or a
    /// key, recipients or passphrase file is unusable.
    #[error("{}: {detail}", path.display())]
    Crypt {
        /// The backup or key file concerned.
        path: PathBuf,
        /// What is wrong, e.g. "encrypted: --identity is needed to read it".
        detail: String,
        /// What to try.
        hint: Option<&'static str>,
    },
    /// An incremental backup's parent vanished from the location (a prune) or was replaced
    /// while the backup ran: the backup is not published as an incremental.
    #[error("{}: the parent of this incremental backup {detail} while it ran", path.display())]
    ParentGone {
        /// The parent archive.
        path: PathBuf,
        /// "vanished" or "was replaced".
        detail: String,
    },
    /// An object store (S3) refused or failed a request, after retries where they help.
    #[error("{url}: {op}: {detail}")]
    Remote {
        /// What was being done, e.g. "upload".
        op: &'static str,
        /// The object or location concerned (`s3://bucket/key`).
        url: String,
        /// What the server said or why it could not be reached (never a secret).
        detail: String,
        /// What to try.
        hint: &'static str,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Builds an [`Error::Sqlite`].
    pub fn sqlite(op: &'static str, path: impl AsRef<Path>, source: rusqlite::Error) -> Self {
        Error::Sqlite {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Builds an [`Error::BadArchive`].
    pub fn bad_archive(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::BadArchive {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The error for `checks` of which some failed (`None` when none did): the failed checks
    /// by name and detail, and the most serious class of problem they found.
    pub fn from_failed_checks(path: impl AsRef<Path>, checks: &[Check]) -> Option<Self> {
        let failed: Vec<&Check> = checks.iter().filter(|c| c.failed()).collect();
        if failed.is_empty() {
            return None;
        }
        Some(Error::VerificationFailed {
            path: path.as_ref().to_path_buf(),
            failed: failed
                .iter()
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect::<Vec<_>>()
                .join("; "),
            class: failed.iter().filter_map(|c| c.class).max(),
        })
    }

    /// Which class of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::CorruptDatabase { .. }
            | Error::BadArchive { .. }
            | Error::ChecksumMismatch { .. }
            | Error::VerificationFailed { .. } => ErrorClass::Corrupt,
            Error::WouldOverwrite { .. }
            | Error::InUse { .. }
            | Error::NewerSchema { .. }
            | Error::UnsafeFile { .. } => ErrorClass::Refused,
            Error::Sqlite { source, .. } if is_corruption(source) => ErrorClass::Corrupt,
            Error::InvalidOption(_) => ErrorClass::Usage,
            Error::Cancelled => ErrorClass::Interrupted,
            Error::Io { source, .. } if is_cancelled(source) => ErrorClass::Interrupted,
            _ => ErrorClass::Failed,
        }
    }

    /// A short suggestion of what to try, where one helps.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::WouldOverwrite { path } if crate::model::naming::is_remote(path) => {
                Some("objects in a bucket are never replaced: choose another name")
            }
            Error::WouldOverwrite { .. } => Some(
                "pass --overwrite to replace it (restore keeps a safety archive of a database it replaces)",
            ),
            Error::NewerSchema { .. } => Some(
                "the archive comes from a newer version of the application; pass --allow-newer-schema if that is intended",
            ),
            Error::InUse { .. } => Some("stop the application that uses the database, then retry"),
            Error::CorruptDatabase { .. } => Some(
                "`litevault backup --allow-corrupt` archives it as it is (marked corrupt); `sqlite3 DB .recover` salvages its rows",
            ),
            Error::NoSpace { .. } => Some("free some space or choose another directory"),
            Error::Sqlite { source, .. }
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                Some(NO_SPACE_HINT)
            }
            Error::Io { source, .. } if is_out_of_space(source) => Some(NO_SPACE_HINT),
            Error::BadArchive { .. } | Error::ChecksumMismatch { .. } => {
                Some("the archive is damaged or was modified; use another copy")
            }
            Error::NotADatabase { .. } => {
                Some("point litevault at the main database file (not its -wal or -shm)")
            }
            Error::Remote { hint, .. } => Some(hint),
            Error::Crypt { hint, .. } => *hint,
            Error::FilesAfterRestore { .. } => Some(
                "fix the cause, then restore again with --files-to and --overwrite (the database is already the archive's)",
            ),
            Error::VerificationFailed { class: Some(class), .. } => Some(class.hint()),
            _ => None,
        }
    }
}

/// The hint for every way of running out of space.
const NO_SPACE_HINT: &str = "no space left (the disk, a quota or a file-size limit is full): free some space or choose another directory; nothing was published or replaced";

/// Whether an I/O error means the disk, a quota or a file-size limit is full.
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    ) || e.kind() == std::io::ErrorKind::StorageFull
}

/// Whether an SQLite error means the file is corrupt or not a database.
pub(crate) fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase)
    )
}

/// The I/O error a reader or writer returns when the caller cancelled the work (an
/// [`io::Error`](std::io::Error) carrying [`Error::Cancelled`]): the operation's own error
/// then has [`ErrorClass::Interrupted`].
pub fn cancelled_io() -> std::io::Error {
    std::io::Error::other(Error::Cancelled)
}

/// Whether this I/O error is [`cancelled_io`]'s.
pub fn is_cancelled(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|inner| matches!(inner, Error::Cancelled))
}
