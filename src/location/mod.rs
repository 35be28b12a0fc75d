//! Locations: the places that hold backups — a local directory, a prefix in an S3-compatible
//! bucket (`s3://bucket/prefix`) or in a bucket in this process's memory (`mem://bucket/prefix`,
//! for tests and for applications that embed the library).
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
//! `s3://` or `mem://` names an object in a bucket ([`is_remote`], [`Scheme`]); anything else is
//! a local file.

pub mod faulty;
pub mod local;
pub mod memory;
#[cfg(feature = "s3")]
pub mod s3;
pub mod store;

pub mod conformance;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

pub use crate::model::naming::{format_time, is_backup_name, is_remote, sequence, Scheme};
pub use store::{CreateOptions, DownloadError, Location, NewObject, ObjectMeta, Published};

/// Opens the location that `spec` names: `s3://bucket/prefix`, `mem://bucket/prefix` or a local
/// directory (which is not created here; see [`open_for_writing`]).
pub fn open(spec: &Path) -> Result<Arc<dyn Location>> {
    let s = spec.to_str();
    match Scheme::of(spec) {
        Scheme::S3 => return open_bucket(s.unwrap_or_default()),
        Scheme::Memory => return memory::open(s.unwrap_or_default()),
        Scheme::Local => {}
    }
    if let Some(s) = s {
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::InvalidOption(format!(
                "unsupported location scheme {scheme:?} in {s:?} (use a directory or s3://bucket/prefix)"
            )));
        }
    }
    Ok(Arc::new(local::LocalDir::new(spec)?))
}

/// Opens the bucket prefix `url` (`s3://bucket/prefix`).
#[cfg(feature = "s3")]
fn open_bucket(url: &str) -> Result<Arc<dyn Location>> {
    Ok(Arc::new(s3::S3Location::open(url)?))
}

/// S3 requests this process has sent, by kind ([`store::S3_REQUEST_KINDS`]): every attempt, retries
/// included (all zero in a build without S3 support).
pub fn s3_request_counts() -> Vec<(&'static str, u64)> {
    #[cfg(feature = "s3")]
    return s3::request_counts();
    #[cfg(not(feature = "s3"))]
    store::S3_REQUEST_KINDS.iter().map(|k| (*k, 0)).collect()
}

/// Refuses `url`: this build has no S3 support.
#[cfg(not(feature = "s3"))]
fn open_bucket(url: &str) -> Result<Arc<dyn Location>> {
    Err(Error::InvalidOption(format!(
        "{url}: this litevault was built without S3 support (the `s3` feature)"
    )))
}

/// The [`Error::Remote`] for a read error that is a bucket download breaking off (a
/// [`DownloadError`]), if it is one: readers then report a network failure as one, not as a
/// damaged archive.
pub fn download_error(path: &Path, e: &std::io::Error) -> Option<Error> {
    // A read that the caller cancelled is neither the server's fault nor damage.
    if crate::error::is_cancelled(e) {
        return Some(Error::Cancelled);
    }
    let d = e.get_ref()?.downcast_ref::<DownloadError>()?;
    Some(Error::Remote {
        op: "download",
        url: path.display().to_string(),
        detail: d.0.clone(),
        hint: "retry later; if it persists, check the server",
    })
}

/// Aborts the multipart uploads this process has in progress (for Ctrl-C and SIGTERM handlers);
/// returns how many. Without S3 support there are none.
pub fn abort_active_uploads() -> usize {
    #[cfg(feature = "s3")]
    return s3::abort_active_uploads();
    #[cfg(not(feature = "s3"))]
    0
}

/// Opens a location to write into, creating a local directory when it does not exist.
pub fn open_for_writing(spec: &Path) -> Result<Arc<dyn Location>> {
    if !is_remote(spec) {
        std::fs::create_dir_all(spec).map_err(|e| Error::io("create backup directory", spec, e))?;
    }
    open(spec)
}

/// Splits an object reference into its location and its name: `/dir/a.tar.zst` ->
/// (`/dir`, `a.tar.zst`); `s3://b/p/a.tar.zst` -> (`s3://b/p`, `a.tar.zst`) (`mem://` alike).
pub fn split_object(path: &Path) -> Result<(Arc<dyn Location>, String)> {
    let scheme = Scheme::of(path);
    if scheme != Scheme::Local {
        let url = path.to_str().unwrap_or_default();
        let rest = &url[scheme.prefix().len()..];
        let (parent, name) = match rest.rsplit_once('/') {
            Some((p, n)) if !p.is_empty() && !n.is_empty() => (p, n),
            _ => {
                return Err(Error::InvalidOption(format!(
                    "{url} names no object (expected {}bucket/[prefix/]name)",
                    scheme.prefix()
                )))
            }
        };
        let parent = format!("{}{parent}", scheme.prefix());
        return Ok((open(Path::new(&parent))?, name.to_string()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidOption(format!("{} names no file", path.display())))?;
    let dir = crate::fsutil::parent_dir(path);
    Ok((Arc::new(local::LocalDir::new(&dir)?), name))
}

/// Opens object `path` (a local file, `s3://...` or `mem://...`) for reading from its start. With
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
        // The first range read is made now, so that a missing object is
        // [`Error::NotFound`] here, as a missing local file is (not an I/O error of a read).
        let mut reader = RangeReader::new(loc, name);
        reader.fill()?;
        Ok(Box::new(reader))
    } else {
        loc.read_stream(&name)
    }
}

/// Size of object `path` (a local file, `s3://...` or `mem://...`).
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

    /// Replaces the buffer with the next range.
    fn fill(&mut self) -> Result<()> {
        let got = self.loc.read_range(&self.name, self.next_start, self.next_len)?;
        if (got.len() as u64) < self.next_len {
            self.ended = true;
        }
        self.next_start += got.len() as u64;
        self.next_len = (self.next_len * 4).min(16 << 20);
        self.buf = got;
        self.at = 0;
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            self.fill().map_err(std::io::Error::other)?;
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
