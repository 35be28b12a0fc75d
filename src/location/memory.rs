//! A bucket in this process's memory as a [`Location`]: `mem://bucket/prefix`.
//!
//! This file owns [`MemoryLocation`] and the process-wide registry of `mem://` buckets. It keeps
//! every contract of [`Location`] exactly as the local directory and S3 do (the
//! [`super::conformance`] suite checks it): a new object is held aside while it is written and
//! appears whole under its final name at [`NewObject::finish`], or never; names are taken
//! create-only; a listing is sorted and holds only the direct children of the prefix. Nothing
//! here touches the disk, so a `mem://` location works in every build (no `s3` feature needed)
//! and dies with the process.
//!
//! A `mem://NAME` bucket is created on first use and shared by every [`open`] of a URL in it,
//! so the operations of the library (backup, restore, list, prune, copy), which open locations
//! and objects by their references, all see the same objects. [`register`] puts any other
//! [`Location`] under a name instead (e.g. a [`super::faulty::FaultyLocation`] in tests), so that
//! whole operations run against it.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Cursor, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use sha2::{Digest, Sha256};

use super::store::{CreateOptions, Location, NewObject, ObjectMeta, Published};
use crate::error::{Error, Result};
use crate::model::hex;
use crate::model::naming::{numbered_names, Scheme};

/// How many names (`name`, `name-2` ... ) an object published with `rename_if_taken` tries (as
/// the local directory and S3 do).
const MAX_NUMBERED: usize = 10_000;

/// An object as stored: its bytes and when it was published (seconds since the epoch).
#[derive(Debug, Clone)]
struct Stored {
    bytes: Arc<[u8]>,
    modified: i64,
}

/// The objects of one bucket, by key (`prefix/name`).
#[derive(Debug, Default)]
struct Bucket {
    objects: Mutex<BTreeMap<String, Stored>>,
}

impl Bucket {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Stored>> {
        // A panic while the map was held cannot leave it half-changed: every change is one
        // insert or remove.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a `mem://NAME` URL opens.
#[derive(Debug, Clone)]
enum Registered {
    /// A bucket of this module (prefixes inside it are locations of their own).
    Bucket(Arc<Bucket>),
    /// A location put there by [`register`] (opened whole: it has no prefixes).
    Location(Arc<dyn Location>),
}

fn registry() -> MutexGuard<'static, HashMap<String, Registered>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Registered>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// A prefix in a bucket held in this process's memory.
#[derive(Debug, Clone)]
pub struct MemoryLocation {
    bucket_name: String,
    /// Empty, or ends with '/'.
    prefix: String,
    bucket: Arc<Bucket>,
}

/// Splits `mem://bucket/some/prefix/` into ("bucket", "some/prefix/").
fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix(Scheme::Memory.prefix())
        .ok_or_else(|| Error::InvalidOption(format!("{url:?} is not a mem:// URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_name(bucket).map_err(|why| Error::InvalidOption(format!("{url:?}: {why}")))?;
    let prefix = crate::model::naming::object_prefix(prefix)
        .ok_or_else(|| Error::InvalidOption(format!("{url:?}: invalid prefix")))?;
    Ok((bucket.to_string(), prefix))
}

fn check_bucket_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a bucket name (a-z, A-Z, 0-9, '-', '.', '_')"
        ))
    }
}

/// Opens `mem://bucket/prefix`: a prefix of the bucket of that name in this process (created
/// on first use), or the location [`register`]ed under that name.
pub fn open(url: &str) -> Result<Arc<dyn Location>> {
    let (name, prefix) = parse_url(url)?;
    let entry = registry()
        .entry(name.clone())
        .or_insert_with(|| Registered::Bucket(Arc::default()))
        .clone();
    match entry {
        Registered::Bucket(bucket) => Ok(Arc::new(MemoryLocation {
            bucket_name: name,
            prefix,
            bucket,
        })),
        Registered::Location(loc) if prefix.is_empty() => Ok(loc),
        Registered::Location(_) => Err(Error::InvalidOption(format!(
            "{url}: mem://{name} is a registered location; it has no prefixes"
        ))),
    }
}

/// Puts `loc` under `mem://name` (replacing whatever was there): every later [`open`] of
/// `mem://name` — by any operation of the library — gets `loc`. For the object references it
/// hands out to open it again, `loc.url()` should be `mem://name` (a [`MemoryLocation::new`]
/// of that name, or a wrapper of one).
pub fn register(name: &str, loc: Arc<dyn Location>) -> Result<()> {
    check_bucket_name(name).map_err(Error::InvalidOption)?;
    registry().insert(name.to_string(), Registered::Location(loc));
    Ok(())
}

/// Forgets `mem://name` (its objects are freed once no location opened on it remains); the next
/// [`open`] of it starts an empty bucket.
pub fn remove(name: &str) {
    registry().remove(name);
}

impl MemoryLocation {
    /// A new, empty bucket that calls itself `mem://name` but is not in the registry: for
    /// wrapping and then [`register`]ing under that name.
    pub fn new(name: &str) -> Result<Self> {
        check_bucket_name(name).map_err(Error::InvalidOption)?;
        Ok(MemoryLocation {
            bucket_name: name.to_string(),
            prefix: String::new(),
            bucket: Arc::default(),
        })
    }

    fn key(&self, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidOption(format!(
                "{name:?} is not a plain object name"
            )));
        }
        Ok(format!("{}{name}", self.prefix))
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            path: self.object_path(name),
        }
    }

    fn get(&self, name: &str) -> Result<Option<Stored>> {
        let key = self.key(name)?;
        Ok(self.bucket.lock().get(&key).cloned())
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Location for MemoryLocation {
    fn url(&self) -> String {
        format!("mem://{}/{}", self.bucket_name, self.prefix)
            .trim_end_matches('/')
            .to_string()
    }

    fn object_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("mem://{}/{}{name}", self.bucket_name, self.prefix))
    }

    fn list(&self) -> Result<Vec<ObjectMeta>> {
        // Keys sort as their names do below one prefix, so the listing comes out sorted.
        Ok(self
            .bucket
            .lock()
            .range(self.prefix.clone()..)
            .map_while(|(k, o)| Some((k.strip_prefix(&self.prefix)?, o)))
            .filter(|(name, _)| !name.contains('/'))
            .map(|(name, o)| ObjectMeta {
                name: name.to_string(),
                size: o.bytes.len() as u64,
                modified: o.modified,
            })
            .collect())
    }

    fn head(&self, name: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.get(name)?.map(|o| ObjectMeta {
            name: name.to_string(),
            size: o.bytes.len() as u64,
            modified: o.modified,
        }))
    }

    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>> {
        let o = self.get(name)?.ok_or_else(|| self.not_found(name))?;
        let size = o.bytes.len() as u64;
        let from = start.min(size) as usize;
        let to = start.saturating_add(len).min(size) as usize;
        Ok(o.bytes[from..to].to_vec())
    }

    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        // The bytes as they are now: a delete meanwhile does not cut the stream (as with an
        // open local file).
        let o = self.get(name)?.ok_or_else(|| self.not_found(name))?;
        Ok(Box::new(Cursor::new(o.bytes)))
    }

    fn create(&self, name: &str, opts: &CreateOptions) -> Result<Box<dyn NewObject>> {
        let key = self.key(name)?;
        if !opts.replace && !opts.rename_if_taken && self.bucket.lock().contains_key(&key) {
            return Err(Error::WouldOverwrite {
                path: self.object_path(name),
            });
        }
        Ok(Box::new(MemoryObject {
            loc: self.clone(),
            name: name.to_string(),
            bytes: Vec::new(),
            opts: opts.clone(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        self.bucket.lock().remove(&key);
        Ok(())
    }

    fn clean_up(&self, _older_than_secs: u64) -> Result<Vec<String>> {
        // An unfinished object lives in its writer only: nothing is ever left behind.
        Ok(Vec::new())
    }
}

/// A new object in a [`MemoryLocation`], held by its writer until finished.
struct MemoryObject {
    loc: MemoryLocation,
    name: String,
    bytes: Vec<u8>,
    opts: CreateOptions,
}

impl Write for MemoryObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for MemoryObject {
    fn finish(self: Box<Self>, head: Option<&[u8]>) -> Result<Published> {
        let MemoryObject {
            loc,
            name,
            mut bytes,
            opts,
        } = *self;
        if let Some(head) = head {
            if head.len() as u64 > opts.head_reserve {
                return Err(Error::InvalidOption(format!(
                    "{}: a head of {} bytes does not fit the {} reserved",
                    loc.object_path(&name).display(),
                    head.len(),
                    opts.head_reserve
                )));
            }
            if bytes.len() < head.len() {
                bytes.resize(head.len(), 0);
            }
            bytes[..head.len()].copy_from_slice(head);
        }
        let sha256 = hex(&Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        let stored = Stored {
            bytes: bytes.into(),
            modified: now(),
        };
        // The name is taken under the bucket's lock: the check and the insert are one step, as
        // a create-only rename or a conditional PUT is.
        let mut objects = loc.bucket.lock();
        let candidates: Box<dyn Iterator<Item = String>> = if opts.rename_if_taken && !opts.replace {
            Box::new(
                std::iter::once(name.clone())
                    .chain(numbered_names(&name))
                    .take(MAX_NUMBERED),
            )
        } else {
            Box::new(std::iter::once(name.clone()))
        };
        for candidate in candidates {
            let key = loc.key(&candidate)?;
            if opts.replace || !objects.contains_key(&key) {
                objects.insert(key, stored);
                return Ok(Published {
                    path: loc.object_path(&candidate),
                    name: candidate,
                    size,
                    sha256,
                });
            }
        }
        Err(Error::WouldOverwrite {
            path: loc.object_path(&name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_location_passes_conformance() {
        let loc = MemoryLocation::new("conformance").unwrap();
        super::super::conformance::check(&loc).unwrap();
    }

    #[test]
    fn urls_open_one_shared_bucket_and_list_direct_children_only() {
        let top = open("mem://unit-shared").unwrap();
        let sub = open("mem://unit-shared/a/b/").unwrap();
        assert_eq!(top.url(), "mem://unit-shared");
        assert_eq!(sub.url(), "mem://unit-shared/a/b");
        let mut w = sub.create("x.tar.zst", &CreateOptions::default()).unwrap();
        w.write_all(b"abc").unwrap();
        let p = w.finish(None).unwrap();
        assert_eq!(p.path, PathBuf::from("mem://unit-shared/a/b/x.tar.zst"));
        let mut w = top.create("y.tar.zst", &CreateOptions::default()).unwrap();
        w.write_all(b"yy").unwrap();
        w.finish(None).unwrap();
        // Another open of the same URL sees the object; the top level does not list it.
        let again = open("mem://unit-shared/a/b").unwrap();
        assert_eq!(again.read_range("x.tar.zst", 0, 10).unwrap(), b"abc");
        let names: Vec<_> = top.list().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["y.tar.zst"]);
        assert!(open("mem://unit-shared/a").unwrap().list().unwrap().is_empty());
        // Through the library's object references.
        let (loc, name) = super::super::split_object(&p.path).unwrap();
        assert_eq!(
            (loc.url().as_str(), name.as_str()),
            ("mem://unit-shared/a/b", "x.tar.zst")
        );
        assert_eq!(super::super::object_size(&p.path).unwrap(), 3);
        remove("unit-shared");
    }

    #[test]
    fn replace_and_head_reserve() {
        let loc = MemoryLocation::new("unit-replace").unwrap();
        let mut w = loc.create("a.tar", &CreateOptions::default()).unwrap();
        w.write_all(b"old").unwrap();
        w.finish(None).unwrap();
        let opts = CreateOptions {
            replace: true,
            head_reserve: 2,
            ..Default::default()
        };
        let mut w = loc.create("a.tar", &opts).unwrap();
        w.write_all(b"..new").unwrap();
        let p = w.finish(Some(b"NE")).unwrap();
        assert_eq!(p.name, "a.tar");
        assert_eq!(p.sha256, hex(&Sha256::digest(b"NEnew")));
        assert_eq!(loc.read_range("a.tar", 0, 100).unwrap(), b"NEnew");
        let mut w = loc.create("b.tar", &opts).unwrap();
        w.write_all(b"...").unwrap();
        assert!(matches!(w.finish(Some(b"TOO")), Err(Error::InvalidOption(_))));
        assert!(loc.head("b.tar").unwrap().is_none());
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["mem://", "mem://a b", "mem://b/../x", "mem://b/x//y"] {
            assert!(
                matches!(open(url), Err(Error::InvalidOption(_))),
                "{url} was accepted"
            );
        }
        assert!(matches!(
            super::super::split_object(std::path::Path::new("mem://only-bucket")),
            Err(Error::InvalidOption(_))
        ));
    }
}
