//! The storage contract every location keeps: [`Location`] (list, read a range or a stream,
//! write a new object as a stream, delete), the [`NewObject`] being written, and the
//! descriptions of objects ([`ObjectMeta`], [`Published`]) and of how a new one is made
//! ([`CreateOptions`]). Each method documents its atomicity and not-found contract; the
//! implementations (local, s3) depend on this file only, and `location` opens them.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One object in a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Its name inside the location (no directory or prefix part).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, seconds since the epoch (0 when unknown).
    pub modified: i64,
}

/// How a new object is created ([`Location::create`]).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Permission bits of a local file (less the umask); ignored by object stores.
    pub mode: u32,
    /// Bytes at the head of the object that [`NewObject::finish`] will overwrite (the
    /// manifest written last); 0 when the stream is final as written.
    pub head_reserve: u64,
    /// When the name is taken by the time the object is published, take the next free one
    /// (`-2`, `-3`, ... before the extension) instead of failing. Only for generated names.
    pub rename_if_taken: bool,
    /// Replace an existing object of that name (local files only: `-o FILE --overwrite`).
    pub replace: bool,
}

/// An object published by [`NewObject::finish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Its full reference: a local path or `s3://bucket/key`.
    pub path: PathBuf,
    /// Its name in the location.
    pub name: String,
    /// Bytes stored.
    pub size: u64,
    /// SHA-256 of the bytes stored (hex).
    pub sha256: String,
}

/// Why a download broke off: the payload of the `io::Error` a remote stream's `read` returns
/// when the connection fails part-way, so that readers report a network failure as one
/// ([`crate::location::download_error`]), not as a damaged archive.
#[derive(Debug)]
pub struct DownloadError(pub String);

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DownloadError {}

/// A new object being written. Bytes written go to the object in order; nothing is visible
/// under the final name before [`NewObject::finish`] returns. Dropping it without finishing
/// discards everything written (a local temp file is removed, an S3 multipart upload aborted).
pub trait NewObject: std::io::Write + Send {
    /// Overwrites the first `head.len()` bytes with `head` (at most the
    /// [`CreateOptions::head_reserve`] given at creation, and only when one was), makes the object
    /// durable and visible under its name, and returns what was published. Fails with
    /// [`crate::error::Error::WouldOverwrite`] when the name was taken meanwhile (and `rename_if_taken` was
    /// not set); then nothing is published.
    fn finish(self: Box<Self>, head: Option<&[u8]>) -> Result<Published>;
}

/// A place that holds backups. Every method names its atomicity and not-found contract.
pub trait Location: Send + Sync + std::fmt::Debug {
    /// The location as a user writes it: an absolute directory path or `s3://bucket/prefix`.
    fn url(&self) -> String;

    /// The full reference of object `name` (a path, or `s3://bucket/prefix/name`).
    fn object_path(&self, name: &str) -> PathBuf;

    /// The local directory, for a location on this machine.
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// The objects directly in the location (not in sub-directories or sub-prefixes), sorted by
    /// name, without litevault's own temp files. A location that does not exist: a local
    /// directory is [`crate::error::Error::NotFound`]; a bucket prefix with no objects lists empty (prefixes
    /// have no existence of their own); a missing bucket is an error.
    fn list(&self) -> Result<Vec<ObjectMeta>>;

    /// The object `name`, or `None` when it does not exist.
    fn head(&self, name: &str) -> Result<Option<ObjectMeta>>;

    /// Up to `len` bytes of object `name` from byte `start` (fewer at its end; empty past it).
    /// [`crate::error::Error::NotFound`] when the object does not exist.
    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>>;

    /// The whole object `name` as a stream, read once from its start. [`crate::error::Error::NotFound`]
    /// when it does not exist. A stream cut short by the network is an I/O error from `read`
    /// (carrying a [`DownloadError`]), never a silent early end.
    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>>;

    /// Starts a new object `name`. Fails at once with [`crate::error::Error::WouldOverwrite`] when the name
    /// is taken (unless `opts.replace` or `opts.rename_if_taken`), and at
    /// [`NewObject::finish`] when it was taken meanwhile: an existing object is never
    /// replaced (except a local file with `opts.replace`).
    fn create(&self, name: &str, opts: &CreateOptions) -> Result<Box<dyn NewObject>>;

    /// Deletes object `name`. Deleting an object that does not exist is not an error. Other
    /// objects are untouched; a crash leaves the object either whole or gone.
    fn delete(&self, name: &str) -> Result<()>;

    /// Removes what failed writes of litevault left behind that no live run can still use:
    /// local temp files of killed runs, incomplete multipart uploads under the prefix older
    /// than `older_than_secs`. Returns a description of each thing removed.
    fn clean_up(&self, older_than_secs: u64) -> Result<Vec<String>>;

    /// Whether enough space is free for `bytes` more (only local directories can tell).
    fn ensure_space(&self, _bytes: u64) -> Result<()> {
        Ok(())
    }
}

/// Kinds of S3 requests, as object storage bills them: `PUT` (PutObject, UploadPart), `POST`
/// (CreateMultipartUpload, CompleteMultipartUpload), `LIST` (ListObjectsV2,
/// ListMultipartUploads), `GET`, `HEAD`, `DELETE` (DeleteObject, AbortMultipartUpload).
pub const S3_REQUEST_KINDS: [&str; 6] = ["PUT", "POST", "LIST", "GET", "HEAD", "DELETE"];
