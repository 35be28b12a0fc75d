//! A local directory as a [`Location`].
//!
//! New objects are written to a hidden temp file in the directory ([`AtomicFile`]), which
//! [`NewObject::finish`] fsyncs, renames into place without replacing anything and follows with
//! an fsync of the directory: a crash at any instant leaves no file or the whole file under the
//! final name. Temp files of killed runs are swept by [`Location::clean_up`] (and by every
//! command that writes here).

use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::store::{CreateOptions, Location, NewObject, ObjectMeta, Published};
use crate::error::{Error, Result};
use crate::fsutil::{self, AtomicFile, WritebackFile};
use crate::model::hex;

/// How many names (`name`, `name-2` ... ) a backup published under a generated name tries.
const MAX_NUMBERED: usize = 10_000;

/// A directory on this machine that holds backups.
#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// The directory `dir` (made absolute; it need not exist yet).
    pub fn new(dir: &Path) -> Result<Self> {
        let dir = std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))?;
        Ok(LocalDir { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_name(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidOption(format!("{name:?} is not a plain file name")));
        }
        Ok(self.dir.join(name))
    }
}

fn not_found_or(path: &Path, op: &'static str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        Error::io(op, path, e)
    }
}

impl Location for LocalDir {
    fn url(&self) -> String {
        self.dir.display().to_string()
    }

    fn object_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn list(&self) -> Result<Vec<ObjectMeta>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| not_found_or(&self.dir, "read directory", e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read directory", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(fsutil::TEMP_PREFIX) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            out.push(ObjectMeta {
                name,
                size: meta.len(),
                modified: mtime(&meta),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn head(&self, name: &str) -> Result<Option<ObjectMeta>> {
        let path = self.check_name(name)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                name: name.to_string(),
                size: m.len(),
                modified: mtime(&m),
            })),
            // A directory or other non-file still takes the name.
            Ok(m) => Ok(Some(ObjectMeta {
                name: name.to_string(),
                size: 0,
                modified: mtime(&m),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>> {
        let path = self.check_name(name)?;
        let mut f = std::fs::File::open(&path).map_err(|e| not_found_or(&path, "open", e))?;
        f.seek(io::SeekFrom::Start(start))
            .map_err(|e| Error::io("read", &path, e))?;
        let mut out = Vec::new();
        f.take(len)
            .read_to_end(&mut out)
            .map_err(|e| Error::io("read", &path, e))?;
        Ok(out)
    }

    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.check_name(name)?;
        let f = std::fs::File::open(&path).map_err(|e| not_found_or(&path, "open", e))?;
        Ok(Box::new(f))
    }

    fn create(&self, name: &str, opts: &CreateOptions) -> Result<Box<dyn NewObject>> {
        let path = self.check_name(name)?;
        if !self.dir.is_dir() {
            return Err(Error::NotFound {
                path: self.dir.clone(),
            });
        }
        if !opts.replace && !opts.rename_if_taken && std::fs::symlink_metadata(&path).is_ok() {
            return Err(Error::WouldOverwrite { path });
        }
        // Leftovers of killed runs (temp snapshots, unfinished archives) go first.
        fsutil::sweep_leftovers(&self.dir);
        let mut atomic = AtomicFile::create(&path, if opts.mode == 0 { 0o600 } else { opts.mode })?;
        let tmp = atomic.temp_path().to_path_buf();
        let file = atomic
            .file()
            .try_clone()
            .map_err(|e| Error::io("open", &tmp, e))?;
        Ok(Box::new(LocalObject {
            out: Some(BufWriter::with_capacity(1 << 20, WritebackFile::new(file))),
            hasher: (opts.head_reserve == 0).then(Sha256::new),
            bytes: 0,
            head_reserve: opts.head_reserve,
            atomic: Some(atomic),
            dir: self.dir.clone(),
            rename_if_taken: opts.rename_if_taken,
            replace: opts.replace,
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.check_name(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => fsutil::sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete", &path, e)),
        }
    }

    fn clean_up(&self, _older_than_secs: u64) -> Result<Vec<String>> {
        Ok(fsutil::sweep_leftovers(&self.dir)
            .into_iter()
            .map(|p| format!("removed leftover temp file {}", p.display()))
            .collect())
    }

    fn ensure_space(&self, bytes: u64) -> Result<()> {
        fsutil::ensure_space(&self.dir, bytes)
    }
}

fn mtime(m: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    m.mtime()
}

/// A new file in a [`LocalDir`], under a temp name until finished.
struct LocalObject {
    out: Option<BufWriter<WritebackFile>>,
    /// Hashes the stream as it is written; `None` when the head is rewritten at the end (the
    /// file is then hashed back from the page cache while it is fsynced).
    hasher: Option<Sha256>,
    bytes: u64,
    head_reserve: u64,
    atomic: Option<AtomicFile>,
    dir: PathBuf,
    rename_if_taken: bool,
    replace: bool,
}

impl Write for LocalObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("object already finished"))?;
        let n = out.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl NewObject for LocalObject {
    fn finish(mut self: Box<Self>, head: Option<&[u8]>) -> Result<Published> {
        use std::os::unix::fs::FileExt;
        let mut atomic = self
            .atomic
            .take()
            .ok_or_else(|| Error::InvalidOption("finished twice".into()))?;
        let tmp = atomic.temp_path().to_path_buf();
        let io_err = |e| Error::io("write", &tmp, e);
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::InvalidOption("finished twice".into()))?;
        out.into_inner().map_err(|e| io_err(e.into_error()))?.into_inner();
        let file = atomic.file().try_clone().map_err(io_err)?;
        let (sha256, size) = match (head, self.hasher.take()) {
            (None, Some(h)) => (hex(&h.finalize()), self.bytes),
            (head, _) => {
                let head = head.unwrap_or_default();
                if head.len() as u64 > self.head_reserve {
                    return Err(io_err(io::Error::other(format!(
                        "a head of {} bytes does not fit the {} reserved",
                        head.len(),
                        self.head_reserve
                    ))));
                }
                file.write_all_at(head, 0).map_err(io_err)?;
                // The checksum covers the final bytes, so the file is read back from the page
                // cache while another thread waits for the disk.
                let (synced, hashed) = std::thread::scope(|s| {
                    let sync = s.spawn(|| file.sync_data());
                    let hashed = hash_file(&file);
                    (
                        sync.join()
                            .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked"))),
                        hashed,
                    )
                });
                synced.map_err(|e| Error::io("fsync", &tmp, e))?;
                hashed.map_err(io_err)?
            }
        };
        let path = if self.replace {
            atomic.commit_replace()?
        } else if self.rename_if_taken {
            // The rename itself is create-only: a name another run took in the instant
            // between any check and the rename makes it try the next (`-2`, `-3`, ...).
            let name = atomic
                .final_path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = self.dir.clone();
            let names = std::iter::once(name.clone())
                .chain(crate::model::naming::numbered_names(&name))
                .take(MAX_NUMBERED)
                .map(move |n| dir.join(n));
            atomic.commit_first_free(names)?
        } else {
            atomic.commit()?
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Published {
            path,
            name,
            size,
            sha256,
        })
    }
}

fn hash_file(file: &std::fs::File) -> io::Result<(String, u64)> {
    use std::os::unix::fs::FileExt;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok((hex(&hasher.finalize()), at))
}
