//! File-system helpers that every writer in litevault goes through.
//!
//! [`AtomicFile`] is the only way litevault creates a file under a final name: it writes a hidden
//! temp file in the destination directory, and on [`AtomicFile::commit`] fsyncs it, renames it into
//! place (never over an existing file) and fsyncs the directory, so a crash at any instant leaves
//! either no file or the whole file under the final name. This module also answers "how much space
//! is free" and "does another process hold SQLite locks on this database".

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use crate::model::naming::TEMP_PREFIX;

/// The prefix of this process's temp files and directories: [`TEMP_PREFIX`], then
/// `p<pid>@<host>@`, so that a later run can tell the leftover of a killed run on this machine
/// (its process is gone) from the work of a live one ([`sweep_leftovers`]).
pub fn temp_prefix() -> String {
    format!("{TEMP_PREFIX}p{}@{}@", std::process::id(), host())
}

/// Directories where this process has made temp files or directories (for
/// [`remove_own_temps`]).
fn temp_dirs() -> &'static std::sync::Mutex<Vec<PathBuf>> {
    static DIRS: std::sync::OnceLock<std::sync::Mutex<Vec<PathBuf>>> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Records that this process makes temp entries in `dir`.
pub fn note_temp_dir(dir: &Path) {
    if let Ok(mut v) = temp_dirs().lock() {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !v.contains(&dir) {
            v.push(dir);
        }
    }
}

/// Removes every temp file and directory of this process (named with [`temp_prefix`]) from the
/// directories where it made some: for a process about to exit on a signal, whose destructors
/// will not run. Returns how many entries it removed. Symlinks are never followed.
pub fn remove_own_temps() -> usize {
    let prefix = temp_prefix();
    let dirs = temp_dirs().lock().map(|v| v.clone()).unwrap_or_default();
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            let gone = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).is_ok(),
                Ok(m) if m.is_file() => std::fs::remove_file(&path).is_ok(),
                _ => false,
            };
            removed += gone as usize;
        }
    }
    removed
}

/// Copies up to `len` bytes at `offset` of `src` to the same offset of `dst`, in the kernel
/// when it can (`copy_file_range`, which file systems with shared extents make a reflink);
/// returns how many were copied (0 at the end of `src`).
pub fn copy_range(src: &File, dst: &File, offset: u64, len: u64) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let (mut off_in, mut off_out) = (offset as libc::loff_t, offset as libc::loff_t);
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 30);
    // SAFETY: both descriptors are open for the call; the offsets live on this stack frame.
    let n = unsafe {
        libc::copy_file_range(
            src.as_raw_fd(),
            &mut off_in,
            dst.as_raw_fd(),
            &mut off_out,
            len,
            0,
        )
    };
    // 0 is the end of `src`, or a file system that copies nothing this way: the buffer says.
    if n > 0 || (n == 0 && len == 0) {
        return Ok(n as u64);
    }
    let e = std::io::Error::last_os_error();
    if n < 0
        && !matches!(
            e.raw_os_error(),
            Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EPERM)
        )
    {
        return Err(e);
    }
    // Through a buffer, where the kernel cannot.
    let mut buf = vec![0u8; len.min(4 << 20)];
    let n = src.read_at(&mut buf, offset)?;
    dst.write_all_at(&buf[..n], offset)?;
    Ok(n as u64)
}

/// The descriptor of `path` this process keeps open for its lifetime, one per file (by device
/// and inode), opened read-only or read-write.
///
/// Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
/// included: a database file opened by litevault itself while a connection of the same
/// process is open on it would lose that connection's locks, and the application's last close
/// could then checkpoint and delete a `-wal` the connection still relies on. Every such open of
/// a live database (a replicator's copy of it, the backup's catch-up checkpoint, the restore's
/// lock probe and live write) goes through a descriptor from here, which is never closed (a
/// long-running daemon holds one per database, plus one per file replaced since). Files that
/// litevault wrote itself and nobody else opens (snapshots, extracted archives) are opened and
/// closed as usual: a descriptor kept for one of those would keep a deleted file's space.
pub fn kept_open(path: &Path, write: bool) -> io::Result<std::sync::Arc<File>> {
    use std::os::unix::fs::MetadataExt;
    use std::sync::{Arc, Mutex};
    /// (device, inode, writable) and the descriptor.
    type Kept = Vec<((u64, u64, bool), Arc<File>)>;
    static OPEN: Mutex<Kept> = Mutex::new(Vec::new());
    let meta = std::fs::metadata(path)?;
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let found = |open: &Kept, dev, ino| {
        open.iter()
            .find(|((d, i, w), _)| (*d, *i) == (dev, ino) && (*w || !write))
            .map(|(_, f)| f.clone())
    };
    if let Some(f) = found(&open, meta.dev(), meta.ino()) {
        return Ok(f);
    }
    let file = std::fs::OpenOptions::new().read(true).write(write).open(path)?;
    let meta = file.metadata()?;
    let file = Arc::new(file);
    // Kept even when the path was replaced meanwhile by a file already held: it must not close.
    open.push(((meta.dev(), meta.ino(), write), file.clone()));
    Ok(file)
}

/// A new temp directory in `dir`, named with [`temp_prefix`] (removed when dropped).
pub fn temp_dir_in(dir: &Path) -> Result<tempfile::TempDir> {
    note_temp_dir(dir);
    tempfile::Builder::new()
        .prefix(&temp_prefix())
        .tempdir_in(dir)
        .map_err(|e| Error::io("create temp directory in", dir, e))
}

/// The warning that names the leftovers [`sweep_leftovers`] removed.
pub fn leftovers_note(removed: &[PathBuf]) -> String {
    format!(
        "removed {} leftover temp file(s) of killed litevault runs: {}",
        removed.len(),
        removed
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Where this process's pid means something, as it goes into temp names: the machine's name,
/// its boot (two machines of the same name sharing a directory, or one machine after a
/// reboot, differ there) and the pid namespace (so do two containers of one host); "" when
/// unknown, or when /proc is not this process's (then nothing is swept).
fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let keep =
            |s: &str, ok: fn(char) -> bool| -> String { s.trim().chars().filter(|&c| ok(c)).collect() };
        let name: String = read("/proc/sys/kernel/hostname")
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let boot: String = keep(&read("/proc/sys/kernel/random/boot_id"), |c| {
            c.is_ascii_hexdigit()
        })
        .chars()
        .take(12)
        .collect();
        // "pid:[4026531836]"
        let ns: String = std::fs::read_link("/proc/self/ns/pid")
            .map(|l| keep(&l.to_string_lossy(), |c| c.is_ascii_digit()))
            .unwrap_or_default();
        let own_proc = std::fs::read_link("/proc/self")
            .is_ok_and(|l| l.to_string_lossy() == std::process::id().to_string());
        if name.is_empty() || boot.is_empty() || ns.is_empty() || !own_proc {
            String::new()
        } else {
            format!("{name}~{boot}~{ns}")
        }
    })
}

/// Whether process `pid` of this pid namespace is gone (`kill(pid, 0)` fails with ESRCH; a
/// process of another user answers EPERM and counts as alive).
fn process_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Removes from `dir` the temp files and directories that litevault runs on this machine, since
/// its last boot, left when they were killed (`kill -9`): entries named by [`temp_prefix`],
/// owned by this user, whose process no longer exists. A live run's files, other users',
/// other machines' and containers' (a shared directory), leftovers from before a reboot, older
/// unnamed ones and symlinks are never touched. Returns what was removed; errors are ignored
/// (a leftover that cannot be removed stays, as it would have anyway).
pub fn sweep_leftovers(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut removed = Vec::new();
    if host().is_empty() {
        return removed;
    }
    // SAFETY: no arguments, cannot fail.
    let me = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|n| n.strip_prefix('p'))
        else {
            continue;
        };
        let mut parts = rest.splitn(3, '@');
        let (Some(pid), Some(h), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if h != host() || pid == std::process::id() || !process_gone(pid) {
            continue;
        }
        let path = entry.path();
        let gone = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.uid() != me => false,
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).is_ok(),
            Ok(m) if m.is_file() => std::fs::remove_file(&path).is_ok(),
            _ => false,
        };
        if gone {
            removed.push(path);
        }
    }
    removed
}

/// A file being written under a temp name, moved to its final name only by [`AtomicFile::commit`].
/// Dropping it without committing removes the temp file.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    final_path: PathBuf,
}

impl AtomicFile {
    /// Starts a file that will become `final_path`, created with permission bits `mode` (less
    /// the umask). The temp file lives in the same directory so the final rename is atomic.
    pub fn create(final_path: &Path, mode: u32) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = parent_dir(final_path);
        note_temp_dir(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempfile_in(&dir)
            .map_err(|e| Error::io("create temp file in", &dir, e))?;
        Ok(AtomicFile {
            tmp,
            final_path: final_path.to_path_buf(),
        })
    }

    /// The open temp file, for writing.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The temp file's current path.
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Changes the path the file will have once committed (same directory).
    pub fn set_final_path(&mut self, path: PathBuf) {
        self.final_path = path;
    }

    /// The path the file will have once committed.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Like [`AtomicFile::commit`] but atomically replaces an existing file of that name.
    pub fn commit_replace(self) -> Result<PathBuf> {
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", self.tmp.path(), e))?;
        let final_path = self.final_path;
        self.tmp
            .persist(&final_path)
            .map_err(|e| Error::io("rename temp file to", &final_path, e.error))?;
        sync_dir(&parent_dir(&final_path))?;
        Ok(final_path)
    }

    /// Like [`AtomicFile::commit`], but when a name is taken (by another process, even in the
    /// instant between a check and the rename) the next of `names` is tried: the rename never
    /// replaces a file, and the file is published under the first name that was free at the
    /// moment of its rename. [`Error::WouldOverwrite`] only when every name is taken.
    pub fn commit_first_free(self, names: impl IntoIterator<Item = PathBuf>) -> Result<PathBuf> {
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", self.tmp.path(), e))?;
        let mut tmp = self.tmp;
        let mut last = self.final_path;
        for path in names {
            match tmp.persist_noclobber(&path) {
                Ok(_) => {
                    sync_dir(&parent_dir(&path))?;
                    return Ok(path);
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                    tmp = e.file;
                    last = path;
                }
                Err(e) => return Err(Error::io("rename temp file to", &path, e.error)),
            }
        }
        Err(Error::WouldOverwrite { path: last })
    }

    /// fsyncs the content, renames it to the final name (failing with
    /// [`Error::WouldOverwrite`] if that name exists) and fsyncs the directory.
    pub fn commit(self) -> Result<PathBuf> {
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| Error::io("fsync", self.tmp.path(), e))?;
        let final_path = self.final_path;
        match self.tmp.persist_noclobber(&final_path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::WouldOverwrite { path: final_path });
            }
            Err(e) => return Err(Error::io("rename temp file to", &final_path, e.error)),
        }
        sync_dir(&parent_dir(&final_path))?;
        Ok(final_path)
    }
}

/// A file writer that has the kernel start writing its data to disk every few MiB
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux, from a helper thread, because the call
/// blocks while the disk's queue is full), so that the disk works while the data is still
/// being produced and the fsync before the final rename has little left to do. It changes
/// only when data reaches the disk, never what is written; durability still comes from that
/// fsync ([`AtomicFile::commit`]).
#[derive(Debug)]
pub struct WritebackFile {
    /// Always `Some` until [`WritebackFile::into_inner`].
    file: Option<File>,
    written: u64,
    announced: u64,
    flusher: Option<(std::sync::mpsc::Sender<u64>, std::thread::JoinHandle<()>)>,
}

/// Bytes written between two writeback requests.
const WRITEBACK_CHUNK: u64 = 8 << 20;

impl WritebackFile {
    /// Wraps a file opened for writing, positioned at its start.
    pub fn new(file: File) -> Self {
        let flusher = Self::spawn_flusher(&file);
        WritebackFile {
            file: Some(file),
            written: 0,
            announced: 0,
            flusher,
        }
    }

    #[cfg(target_os = "linux")]
    fn spawn_flusher(file: &File) -> Option<(std::sync::mpsc::Sender<u64>, std::thread::JoinHandle<()>)> {
        use std::os::unix::io::AsRawFd;
        let fd = file.try_clone().ok()?;
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let handle = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                let mut started = 0u64;
                for upto in rx {
                    // SAFETY: a valid descriptor (owned by this thread) and a byte range; the
                    // call only schedules writeback, and a failure is harmless (the final
                    // fsync writes whatever is left and reports errors).
                    unsafe {
                        libc::sync_file_range(
                            fd.as_raw_fd(),
                            started as libc::off64_t,
                            (upto - started) as libc::off64_t,
                            libc::SYNC_FILE_RANGE_WRITE,
                        );
                    }
                    started = upto;
                }
            })
            .ok()?;
        Some((tx, handle))
    }

    #[cfg(not(target_os = "linux"))]
    fn spawn_flusher(_file: &File) -> Option<(std::sync::mpsc::Sender<u64>, std::thread::JoinHandle<()>)> {
        None
    }

    /// The wrapped file (once the helper thread is done with it).
    pub fn into_inner(mut self) -> File {
        self.stop_flusher();
        self.file.take().expect("the file is there until into_inner")
    }

    fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is there until into_inner")
    }

    fn stop_flusher(&mut self) {
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl Drop for WritebackFile {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

impl io::Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file().write(buf)?;
        self.written += n as u64;
        if self.written - self.announced >= WRITEBACK_CHUNK {
            if let Some((tx, _)) = &self.flusher {
                let _ = tx.send(self.written);
            }
            self.announced = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// The directory a path lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs a directory so that a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all().map_err(|e| Error::io("fsync directory", dir, e))
}

/// Bytes available to an unprivileged user on the file system holding `dir`.
pub fn free_space(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidOption(format!("path contains a NUL byte: {}", dir.display())))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a plain C struct that statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(Error::io("statvfs", dir, io::Error::last_os_error()));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Fails with [`Error::NoSpace`] unless `dir` has at least `needed` bytes free.
pub fn ensure_space(dir: &Path, needed: u64) -> Result<()> {
    let available = free_space(dir)?;
    if available < needed {
        return Err(Error::NoSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

// SQLite's lock bytes (os_unix.c): PENDING_BYTE at 1 GiB, then RESERVED, then a 510-byte SHARED range.
const PENDING_BYTE: i64 = 0x4000_0000;
const LOCK_RANGE_LEN: i64 = 2 + 510;
// In `-shm`, the "dead-man switch" byte that every WAL connection holds a read lock on.
const SHM_DMS_BYTE: i64 = 128;

/// Describes the SQLite locks that other processes (or other open files of this process) hold on
/// a database, or `None` when none are seen.
///
/// Advisory only: an idle rollback-journal connection holds no lock and cannot be seen. The
/// files are read through descriptors kept open ([`kept_open`]), so the probe does not drop this
/// process's own SQLite locks on them.
pub fn lock_holders(db: &Path) -> Option<String> {
    let mut seen = Vec::new();
    if let Some(pid) = probe_lock(db, PENDING_BYTE, LOCK_RANGE_LEN) {
        seen.push(format!("a lock on the database file{}", pid_note(pid)));
    }
    let shm = sidecar(db, "-shm");
    if shm.exists() {
        if let Some(pid) = probe_lock(&shm, SHM_DMS_BYTE, 1) {
            seen.push(format!("an open WAL connection{}", pid_note(pid)));
        }
    }
    if seen.is_empty() {
        None
    } else {
        Some(seen.join(", "))
    }
}

fn pid_note(pid: i32) -> String {
    if pid > 0 {
        format!(" (pid {pid})")
    } else {
        String::new()
    }
}

/// Returns the pid of a conflicting lock holder (or -1 when the kernel does not say), if any lock
/// overlaps `[start, start+len)` in `path`.
fn probe_lock(path: &Path, start: i64, len: i64) -> Option<i32> {
    use std::os::unix::io::AsRawFd;
    // Kept open: closing it would drop this process's own SQLite locks on the file (a daemon
    // that replicates the database a restore probes holds some).
    let f = kept_open(path, false).ok()?;
    // SAFETY: flock is a plain C struct; zeroed is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = start as _;
    fl.l_len = len as _;
    // OFD locks see POSIX locks held by every other open file description, including other
    // connections inside this process; plain F_GETLK would not see this process's own locks.
    #[cfg(target_os = "linux")]
    let cmd = libc::F_OFD_GETLK;
    #[cfg(not(target_os = "linux"))]
    let cmd = libc::F_GETLK;
    // SAFETY: valid fd and a pointer to an initialised flock.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &mut fl) };
    if rc != 0 {
        return None;
    }
    if fl.l_type as i32 == libc::F_UNLCK {
        None
    } else {
        Some(fl.l_pid as i32)
    }
}

/// `db` with a suffix appended to its file name, e.g. `app.db-wal`.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The SQLite side files that may accompany a database: `-wal`, `-shm`, `-journal`.
pub fn existing_sidecars(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| sidecar(db, s))
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn atomic_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let mut f = AtomicFile::create(&target, 0o600).unwrap();
        f.file().write_all(b"hello").unwrap();
        assert!(!target.exists(), "nothing under the final name before commit");
        let tmp = f.temp_path().to_path_buf();
        assert!(tmp
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX));
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello");
        assert!(!tmp.exists());
    }

    #[test]
    fn leftovers_of_dead_processes_on_this_host_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A process that has exited: its pid is free (reuse within the test is unlikely).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let h = host();
        assert!(!h.is_empty());
        let dead_file = d.join(format!("{TEMP_PREFIX}p{dead}@{h}@abc.partial"));
        let dead_dir = d.join(format!("{TEMP_PREFIX}p{dead}@{h}@xyz"));
        let live = d.join(format!("{TEMP_PREFIX}p{me}@{h}@def.partial"));
        let other_host = d.join(format!("{TEMP_PREFIX}p{dead}@not-{h}@ghi.partial"));
        // The same host name after a reboot, or on another machine: another boot id.
        let (name, rest) = h.split_once('~').unwrap();
        let other_boot = d.join(format!(
            "{TEMP_PREFIX}p{dead}@{name}~000000000000~{}@mno.partial",
            rest.split_once('~').unwrap().1
        ));
        let old_style = d.join(format!("{TEMP_PREFIX}jkl.partial"));
        let link = d.join(format!("{TEMP_PREFIX}p{dead}@{h}@link"));
        let user_file = d.join("app.db");
        for f in [
            &dead_file,
            &live,
            &other_host,
            &other_boot,
            &old_style,
            &user_file,
        ] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("source-0.sqlite"), b"x").unwrap();
        std::os::unix::fs::symlink(&user_file, &link).unwrap();
        // This process's own prefix is what the sweep parses.
        assert!(live
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&temp_prefix()));

        // Another user's leftover (only root can make one here).
        let theirs = d.join(format!("{TEMP_PREFIX}p{dead}@{h}@pqr.partial"));
        std::fs::write(&theirs, b"x").unwrap();
        let theirs_kept = std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok();
        if !theirs_kept {
            std::fs::remove_file(&theirs).unwrap();
        }

        let mut removed = sweep_leftovers(d);
        removed.sort();
        let mut want = vec![dead_file.clone(), dead_dir.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(!dead_file.exists() && !dead_dir.exists());
        for kept in [&live, &other_host, &other_boot, &old_style, &user_file] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(std::fs::symlink_metadata(&link).is_ok(), "a symlink was removed");
        assert_eq!(theirs.exists(), theirs_kept, "another user's file");
        assert!(sweep_leftovers(d).is_empty(), "a second sweep finds nothing");
    }

    #[test]
    fn atomic_file_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create(&target, 0o600).unwrap();
        f.file().write_all(b"new").unwrap();
        assert!(matches!(f.commit(), Err(Error::WouldOverwrite { .. })));
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&target, 0o600).unwrap();
            f.file().write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn lock_probe_sees_a_wal_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES(1);")
            .unwrap();
        assert!(lock_holders(&db).is_some(), "open WAL connection must be seen");
        drop(conn);
        assert!(lock_holders(&db).is_none(), "closed connection leaves no lock");
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_space(dir.path()).unwrap() > 0);
        assert!(matches!(
            ensure_space(dir.path(), u64::MAX),
            Err(Error::NoSpace { .. })
        ));
    }

    /// Probing a database for other processes' locks keeps this process's own: a connection
    /// held here (a replicator in a daemon) still keeps another process's last close from
    /// deleting the `-wal`. (Closing a probed descriptor dropped every POSIX lock of this
    /// process on the file.)
    #[test]
    fn probing_for_lock_holders_keeps_this_processs_own_locks() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let ours = rusqlite::Connection::open(&db).unwrap();
        ours.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        let _ = lock_holders(&db);
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute('INSERT INTO t VALUES (2)')\nc.commit()\nc.close()")
            .arg(&db)
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            sidecar(&db, "-wal").exists(),
            "the other process's close removed the -wal"
        );
        let n: i64 = ours
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }
}
