//! A [`Location`] that fails on demand, for tests: [`FaultyLocation`] wraps any location and
//! passes every call through, except the faults armed in its [`Faults`] — a write that fails
//! after some bytes, a `finish` or a `delete` that fails, an object that vanishes, a download
//! cut short. It is public so that tests of applications embedding the library can use it too;
//! it has no other use. Register it under a `mem://` name ([`super::memory::register`]) to run
//! whole operations (backup, restore, prune, ...) against it.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::store::{CreateOptions, DownloadError, Location, NewObject, ObjectMeta, Published};
use crate::error::{Error, Result};

/// The faults a [`FaultyLocation`] injects. All off by default; they stay armed until changed.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// A new object's `write` fails with an I/O error once it has taken this many bytes.
    pub fail_write_after: Option<u64>,
    /// `finish` fails (with [`Error::Remote`]) without publishing anything.
    pub fail_finish: bool,
    /// `delete` of these names fails (with [`Error::Remote`]), deleting nothing.
    pub fail_delete: HashSet<String>,
    /// These names are deleted from the wrapped location right after the next `list` that
    /// shows them (another process deleting them between a listing and its use).
    pub vanish_after_list: HashSet<String>,
    /// These names are deleted from the wrapped location when the next new object is
    /// finished, just before it is published (deleted while an operation ran).
    pub vanish_on_finish: HashSet<String>,
    /// `read_stream` of any object breaks off with an I/O error (a [`DownloadError`]) after
    /// this many bytes.
    pub cut_stream_after: Option<u64>,
}

/// A location that passes everything through to another, except the faults armed.
#[derive(Debug)]
pub struct FaultyLocation {
    inner: Arc<dyn Location>,
    faults: Arc<Mutex<Faults>>,
}

impl FaultyLocation {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: Arc<dyn Location>) -> Self {
        FaultyLocation {
            inner,
            faults: Arc::default(),
        }
    }

    /// The faults, to arm or disarm (`loc.faults().fail_finish = true`).
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }

    fn vanish(&self, names: impl IntoIterator<Item = String>) -> Result<()> {
        for name in names {
            self.inner.delete(&name)?;
        }
        Ok(())
    }
}

fn lock(faults: &Mutex<Faults>) -> MutexGuard<'_, Faults> {
    faults.lock().unwrap_or_else(|p| p.into_inner())
}

fn injected(op: &'static str, path: &Path) -> Error {
    Error::Remote {
        op,
        url: path.display().to_string(),
        detail: "injected fault".into(),
        hint: "a test's fault injection",
    }
}

impl Location for FaultyLocation {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn object_path(&self, name: &str) -> PathBuf {
        self.inner.object_path(name)
    }

    fn local_dir(&self) -> Option<&Path> {
        self.inner.local_dir()
    }

    fn list(&self) -> Result<Vec<ObjectMeta>> {
        let listed = self.inner.list()?;
        let doomed: Vec<String> = {
            let mut f = self.faults();
            let doomed = listed
                .iter()
                .filter(|m| f.vanish_after_list.contains(&m.name))
                .map(|m| m.name.clone())
                .collect::<Vec<_>>();
            for n in &doomed {
                f.vanish_after_list.remove(n);
            }
            doomed
        };
        self.vanish(doomed)?;
        Ok(listed)
    }

    fn head(&self, name: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(name)
    }

    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.read_range(name, start, len)
    }

    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let inner = self.inner.read_stream(name)?;
        Ok(match self.faults().cut_stream_after {
            Some(left) => Box::new(CutReader { inner, left }),
            None => inner,
        })
    }

    fn create(&self, name: &str, opts: &CreateOptions) -> Result<Box<dyn NewObject>> {
        let inner = self.inner.create(name, opts)?;
        Ok(Box::new(FaultyObject {
            inner,
            path: self.inner.object_path(name),
            written: 0,
            faults: Arc::clone(&self.faults),
            loc: Arc::clone(&self.inner),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        if self.faults().fail_delete.contains(name) {
            return Err(injected("delete", &self.inner.object_path(name)));
        }
        self.inner.delete(name)
    }

    fn clean_up(&self, older_than_secs: u64) -> Result<Vec<String>> {
        self.inner.clean_up(older_than_secs)
    }

    fn ensure_space(&self, bytes: u64) -> Result<()> {
        self.inner.ensure_space(bytes)
    }
}

/// A new object whose writes and finish may fail.
struct FaultyObject {
    inner: Box<dyn NewObject>,
    path: PathBuf,
    written: u64,
    faults: Arc<Mutex<Faults>>,
    loc: Arc<dyn Location>,
}

impl Write for FaultyObject {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = lock(&self.faults).fail_write_after {
            let room = limit.saturating_sub(self.written);
            if room == 0 {
                return Err(io::Error::other(format!(
                    "injected fault: write to {} failed after {limit} bytes",
                    self.path.display()
                )));
            }
            let n = self.inner.write(&buf[..buf.len().min(room as usize)])?;
            self.written += n as u64;
            return Ok(n);
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl NewObject for FaultyObject {
    fn finish(self: Box<Self>, head: Option<&[u8]>) -> Result<Published> {
        let (fail, vanish) = {
            let mut f = lock(&self.faults);
            (f.fail_finish, std::mem::take(&mut f.vanish_on_finish))
        };
        for name in vanish {
            self.loc.delete(&name)?;
        }
        if fail {
            // Dropping the inner object discards it.
            return Err(injected("finish", &self.path));
        }
        self.inner.finish(head)
    }
}

/// A stream that breaks off, as a download does when the connection drops.
struct CutReader {
    inner: Box<dyn Read + Send>,
    left: u64,
}

impl Read for CutReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other(DownloadError(
                "injected fault: the connection broke off".into(),
            )));
        }
        let want = out.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut out[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::memory::MemoryLocation;

    fn faulty() -> FaultyLocation {
        FaultyLocation::new(Arc::new(MemoryLocation::new("unit-faulty").unwrap()))
    }

    fn put(loc: &dyn Location, name: &str, bytes: &[u8]) {
        let mut w = loc.create(name, &CreateOptions::default()).unwrap();
        w.write_all(bytes).unwrap();
        w.finish(None).unwrap();
    }

    #[test]
    fn without_faults_it_passes_conformance() {
        super::super::conformance::check(&faulty()).unwrap();
    }

    #[test]
    fn each_fault_fires() {
        let loc = faulty();
        put(&loc, "a.tar", b"0123456789");

        loc.faults().fail_write_after = Some(4);
        let mut w = loc.create("b.tar", &CreateOptions::default()).unwrap();
        assert!(w.write_all(b"0123456789").is_err());
        drop(w);
        loc.faults().fail_write_after = None;

        loc.faults().fail_finish = true;
        let mut w = loc.create("b.tar", &CreateOptions::default()).unwrap();
        w.write_all(b"x").unwrap();
        assert!(matches!(w.finish(None), Err(Error::Remote { op: "finish", .. })));
        loc.faults().fail_finish = false;
        assert!(loc.head("b.tar").unwrap().is_none());

        loc.faults().fail_delete.insert("a.tar".into());
        assert!(matches!(
            loc.delete("a.tar"),
            Err(Error::Remote { op: "delete", .. })
        ));
        loc.faults().fail_delete.clear();
        assert!(loc.head("a.tar").unwrap().is_some());

        loc.faults().cut_stream_after = Some(3);
        let mut got = Vec::new();
        let e = loc
            .read_stream("a.tar")
            .unwrap()
            .read_to_end(&mut got)
            .unwrap_err();
        assert_eq!(got, b"012");
        assert!(crate::location::download_error(Path::new("a.tar"), &e).is_some());
        loc.faults().cut_stream_after = None;

        loc.faults().vanish_after_list.insert("a.tar".into());
        assert_eq!(loc.list().unwrap().len(), 1);
        assert!(loc.head("a.tar").unwrap().is_none());

        put(&loc, "c.tar", b"c");
        loc.faults().vanish_on_finish.insert("c.tar".into());
        put(&loc, "d.tar", b"d");
        let names: Vec<_> = loc.list().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["d.tar"]);
    }
}
