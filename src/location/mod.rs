//! Locations: the places that hold backups — a local directory or a prefix in an S3-compatible
//! bucket (`s3://bucket/prefix`).
//!
//! This module owns the [`Location`] trait (list, read a range or a stream, write a new object
//! as a stream, delete), the parsing of location strings, object naming
//! (`<name>-<stamp>.<ext>`, unique names) and the publishing of new objects. The archive and dump
//! writers produce a byte stream into a [`NewObject`] and never learn where it goes; backup,
//! restore, list, prune and copy orchestrate. Data flows one way: snapshot -> writer -> location.
//!
//! The promise every implementation keeps (and [`conformance`] tests): a new object appears
//! whole or not at all, under its final name, and never replaces an existing one.
//!
//! Archive references are plain paths everywhere in the library: a path whose text starts with
//! `s3://` names an object in a bucket ([`is_remote`]); anything else is a local file.

pub mod local;
pub mod s3;

pub mod conformance;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// A new object being written. Bytes written go to the object in order; nothing is visible
/// under the final name before [`NewObject::finish`] returns. Dropping it without finishing
/// discards everything written (a local temp file is removed, an S3 multipart upload aborted).
pub trait NewObject: std::io::Write + Send {
    /// Overwrites the first `head.len()` bytes with `head` (at most the
    /// [`CreateOptions::head_reserve`] given at creation, and only when one was), makes the object
    /// durable and visible under its name, and returns what was published. Fails with
    /// [`Error::WouldOverwrite`] when the name was taken meanwhile (and `rename_if_taken` was
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
    /// directory is [`Error::NotFound`]; a bucket prefix with no objects lists empty (prefixes
    /// have no existence of their own); a missing bucket is an error.
    fn list(&self) -> Result<Vec<ObjectMeta>>;

    /// The object `name`, or `None` when it does not exist.
    fn head(&self, name: &str) -> Result<Option<ObjectMeta>>;

    /// Up to `len` bytes of object `name` from byte `start` (fewer at its end; empty past it).
    /// [`Error::NotFound`] when the object does not exist.
    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>>;

    /// The whole object `name` as a stream, read once from its start. [`Error::NotFound`]
    /// when it does not exist. A stream cut short by the network is an I/O error from `read`,
    /// never a silent early end.
    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>>;

    /// Starts a new object `name`. Fails at once with [`Error::WouldOverwrite`] when the name
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

pub use crate::model::naming::is_remote;

/// Opens the location that `spec` names: `s3://bucket/prefix` or a local directory (which is
/// not created here; see [`open_for_writing`]).
pub fn open(spec: &Path) -> Result<Arc<dyn Location>> {
    if let Some(url) = spec.to_str().filter(|s| s.starts_with("s3://")) {
        return Ok(Arc::new(s3::S3Location::open(url)?));
    }
    if let Some(s) = spec.to_str() {
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::InvalidOption(format!(
                "unsupported location scheme {scheme:?} in {s:?} (use a directory or s3://bucket/prefix)"
            )));
        }
    }
    Ok(Arc::new(local::LocalDir::new(spec)?))
}

/// Opens a location to write into, creating a local directory when it does not exist.
pub fn open_for_writing(spec: &Path) -> Result<Arc<dyn Location>> {
    if !is_remote(spec) {
        std::fs::create_dir_all(spec).map_err(|e| Error::io("create backup directory", spec, e))?;
    }
    open(spec)
}

/// Splits an object reference into its location and its name: `/dir/a.tar.zst` ->
/// (`/dir`, `a.tar.zst`); `s3://b/p/a.tar.zst` -> (`s3://b/p`, `a.tar.zst`).
pub fn split_object(path: &Path) -> Result<(Arc<dyn Location>, String)> {
    if let Some(url) = path.to_str().filter(|s| s.starts_with("s3://")) {
        let (parent, name) = match url.rsplit_once('/') {
            Some((p, n)) if p.len() > "s3:/".len() && !n.is_empty() => (p, n),
            _ => {
                return Err(Error::InvalidOption(format!(
                    "{url} names no object (expected s3://bucket/[prefix/]name)"
                )))
            }
        };
        return Ok((Arc::new(s3::S3Location::open(parent)?), name.to_string()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidOption(format!("{} names no file", path.display())))?;
    let dir = crate::fsutil::parent_dir(path);
    Ok((Arc::new(local::LocalDir::new(&dir)?), name))
}

/// Opens object `path` (a local file or `s3://...`) for reading from its start. With
/// `head_only`, a remote object is fetched in growing range reads (64 KiB first) as far as the
/// reader goes, for callers that read only the manifest at the head.
pub fn open_read(path: &Path, head_only: bool) -> Result<Box<dyn Read + Send>> {
    if !is_remote(path) {
        return match std::fs::File::open(path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(Error::io("open", path, e)),
        };
    }
    let (loc, name) = split_object(path)?;
    if head_only {
        Ok(Box::new(RangeReader::new(loc, name)))
    } else {
        loc.read_stream(&name)
    }
}

/// Size of object `path` (a local file or `s3://...`).
pub fn object_size(path: &Path) -> Result<u64> {
    if !is_remote(path) {
        return std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound {
                    path: path.to_path_buf(),
                },
                _ => Error::io("stat", path, e),
            });
    }
    let (loc, name) = split_object(path)?;
    loc.head(&name)?.map(|m| m.size).ok_or_else(|| Error::NotFound {
        path: path.to_path_buf(),
    })
}

/// A reader of an object's head through range reads of growing size (64 KiB, then 4x more
/// each time, up to 16 MiB a read).
struct RangeReader {
    loc: Arc<dyn Location>,
    name: String,
    buf: Vec<u8>,
    at: usize,
    next_start: u64,
    next_len: u64,
    ended: bool,
}

impl RangeReader {
    fn new(loc: Arc<dyn Location>, name: String) -> Self {
        RangeReader {
            loc,
            name,
            buf: Vec::new(),
            at: 0,
            next_start: 0,
            next_len: 64 << 10,
            ended: false,
        }
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            let got = self
                .loc
                .read_range(&self.name, self.next_start, self.next_len)
                .map_err(std::io::Error::other)?;
            if (got.len() as u64) < self.next_len {
                self.ended = true;
            }
            self.next_start += got.len() as u64;
            self.next_len = (self.next_len * 4).min(16 << 20);
            self.buf = got;
            self.at = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// `name` with `-2`, `-3`, ... before its extension (`.tar...` or `.sql...`).
pub(crate) fn numbered_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.find(".tar").or_else(|| name.rfind(".sql")) {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    (2u32..).map(move |n| format!("{stem}-{n}{ext}"))
}

/// The default location: `$LITEVAULT_DIR` (a directory or `s3://...`), else the platform data
/// directory's `litevault/backups` (e.g. `~/.local/share/litevault/backups`).
pub fn default_location() -> PathBuf {
    if let Some(d) = std::env::var_os("LITEVAULT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::data_dir()
        .map(|d| d.join("litevault").join("backups"))
        .unwrap_or_else(|| PathBuf::from("litevault-backups"))
}

/// A backup's name in a location: the database file's stem (`app` for `app.db`).
pub fn name_of(db: &Path) -> String {
    db.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "database".into())
}

/// Whether `name` is one of the kinds of objects litevault writes (archive or SQL dump).
pub fn is_backup_name(name: &str) -> bool {
    crate::archive::is_archive_name(name) || crate::dump::is_dump_name(name)
}

/// The newest backup (archive or dump) of `name` in `loc`, created at or before `at` (seconds
/// since the epoch) when given: by the stamp in the object names litevault gives
/// (`<name>-<stamp>...`); backups of the same second by the instant their snapshots were fixed
/// (their manifests' `snapshot_at`, read only for such ties), then by the name's `-N`. Safety
/// archives (`<name>-pre-restore-...`) belong to their own names.
pub fn latest(loc: &dyn Location, name: &str, at: Option<i64>) -> Result<Option<String>> {
    let mut found: Vec<(i64, u32, String)> = Vec::new();
    for m in loc.list()? {
        if !is_backup_name(&m.name) {
            continue;
        }
        let Some((group, created)) = crate::prune::parse_backup_name(&m.name) else {
            continue;
        };
        if group != name || at.is_some_and(|t| created > t) {
            continue;
        }
        found.push((created, sequence(&m.name), m.name));
    }
    let Some(newest) = found.iter().map(|(c, ..)| *c).max() else {
        return Ok(None);
    };
    found.retain(|(c, ..)| *c == newest);
    if found.len() == 1 {
        return Ok(found.pop().map(|(.., n)| n));
    }
    // Same second: the manifests tell which snapshot is the newer (one that cannot be read
    // counts as the start of its second).
    let best = found
        .into_iter()
        .map(|(created, seq, n)| {
            let nanos = crate::dump::read_manifest(&loc.object_path(&n))
                .map(|m| m.snapshot_subsec_nanos(created))
                .unwrap_or(0);
            ((nanos, seq), n)
        })
        .max();
    Ok(best.map(|(_, n)| n))
}

/// [`latest`], or [`Error::NotFound`] naming what was looked for when there is none.
pub fn latest_required(loc: &dyn Location, name: &str, at: Option<i64>) -> Result<String> {
    latest(loc, name, at)?.ok_or_else(|| Error::NotFound {
        path: loc.object_path(&format!(
            "{name}-<stamp>.*{}",
            at.map(|t| format!(" at or before {}", format_time(t)))
                .unwrap_or_default()
        )),
    })
}

pub use crate::prune::policy::sequence;

/// `secs` since the epoch as RFC 3339 UTC (`2026-12-01T10:15:00Z`).
pub fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}
