//! The source's catch-up checkpoint after a backup releases its snapshot of a WAL database.
//!
//! While a backup holds its snapshot, the source's checkpoints cannot pass it and its `-wal`
//! grows (by hundreds of MiB a second under a busy writer: 1.3 GiB during the 4 s a 1 GiB
//! database takes to read, measured). Once the last connection holding the snapshot lets go,
//! the first checkpoint attempt has to copy all of it into the database file and fsync it, and
//! without this module that attempt comes inside the application's next commit (measured: a
//! 1.1 to 1.6 s commit). So the backup runs that checkpoint itself:
//!
//! - the checkpoint connection is opened when the snapshot is taken (read-write: a read-only
//!   connection cannot checkpoint), so nothing is left to do at the release but run it;
//! - just before the last holder lets go, the backup takes SQLite's checkpointer lock (byte 121
//!   of the `-shm` file, part of SQLite's documented WAL locking protocol) with an open file
//!   description lock, so that the application's checkpoint attempts in that instant return
//!   at once (as they do whenever another checkpoint runs), then hands the lock over to its own
//!   `PRAGMA wal_checkpoint(PASSIVE)`, which copies every committed frame and never waits for a
//!   lock;
//! - while the snapshot is held the `-wal` is written back to disk as it grows, and while the
//!   checkpoint runs the database file is (`sync_file_range`, which starts writeback and never
//!   changes data), so the checkpoint's fsyncs, which on ext4 also wait for other dirty data of
//!   the journal, have little left to do.
//!
//! The database's content is not changed: a checkpoint only moves committed pages from the
//! `-wal` into the main file, which SQLite's auto-checkpoint does after every commit past 1000
//! pages. `--no-checkpoint` (`BackupOptions::no_checkpoint`) leaves it to the application.
//!
//! Descriptors of the `-shm` and database files opened here are never closed: closing any
//! descriptor of a file drops every POSIX lock the process holds on it, SQLite's included (a
//! merge or a restore holds its target's write lock while it backs it up). They are kept open
//! for the life of the process, one per file ([`crate::fsutil::kept_open`]; so a long-running daemon holds two per database
//! it backs up, plus those of files replaced since). The `-wal`, on which SQLite takes no
//! lock, is opened for each backup and closed after it.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

/// What the PASSIVE checkpoint a backup runs after it releases its snapshot did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Frames in the `-wal` when it ran.
    pub wal_frames: i64,
    /// Frames it copied into the database file (all of them unless a reader or writer was in
    /// the way; PASSIVE never waits for them).
    pub checkpointed_frames: i64,
    /// Milliseconds it took.
    pub ms: u64,
    /// Why it could not run (e.g. the source is read-only for this user, or the application's
    /// own checkpoint got there first); nothing is wrong then.
    pub error: Option<String>,
    /// Milliseconds after the snapshot was taken at which it started (when the last
    /// connection holding the snapshot let go).
    pub after_ms: u64,
}

/// The byte of the `-shm` file that SQLite's checkpointer lock covers (WAL_CKPT_LOCK: the
/// locks start at offset 120; see sqlite.org/walformat.html).
const CKPT_LOCK_BYTE: i64 = 121;

/// The connections holding a live snapshot, and what runs once the last lets go.
pub(crate) struct Holders {
    /// Holders left; a mutex, so that a release and its "am I the last" are one step.
    left: Mutex<usize>,
    prepared: Mutex<Option<Result<Prepared, String>>>,
    done: Mutex<Option<Checkpoint>>,
    taken: Instant,
}

/// What the checkpoint needs, made ready when the snapshot is taken. Fields drop in order:
/// the writeback thread stops before the descriptors it uses are closed.
struct Prepared {
    /// Writes the `-wal` back while the snapshot is held; stopped at the checkpoint.
    wal_writeback: Option<Writeback>,
    conn: Connection,
    shm: Arc<File>,
    db: Arc<File>,
    /// Kept open for `wal_writeback`, which uses its descriptor.
    _wal: Option<File>,
}

impl Holders {
    /// For a snapshot of `source` held by `holders` parties; with `checkpoint`, prepares the
    /// catch-up checkpoint.
    pub(crate) fn new(source: &Path, holders: usize, checkpoint: bool) -> Holders {
        let prepared = checkpoint.then(|| prepare(source));
        Holders {
            left: Mutex::new(holders),
            prepared: Mutex::new(prepared),
            done: Mutex::new(None),
            taken: Instant::now(),
        }
    }

    /// A holder lets go of the snapshot by running `release` (its COMMIT, or closing its
    /// connections); when it is the last, the catch-up checkpoint runs right after, on this
    /// thread.
    pub(crate) fn release_with(&self, release: impl FnOnce()) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if *left != 1 {
            release();
            *left = left.saturating_sub(1);
            return;
        }
        *left = 0;
        let prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(prepared) = prepared else {
            release();
            return;
        };
        let mut p = match prepared {
            Ok(p) => p,
            Err(e) => {
                release();
                self.record(Instant::now(), 0, 0, Some(e));
                return;
            }
        };
        // Hold the checkpointer lock across the release (briefly waiting out an application
        // checkpoint that has it now), so the catch-up is ours.
        let locked = (0..200).any(|_| {
            let ok = ofd_lock(&p.shm, libc::F_WRLCK as i16);
            if !ok {
                std::thread::sleep(Duration::from_micros(500));
            }
            ok
        });
        release();
        drop(p.wal_writeback.take());
        let db_writeback = Writeback::start(&p.db, Duration::from_millis(20));
        let started = Instant::now();
        let ran = {
            let mut stmt = p.conn.prepare_cached("PRAGMA wal_checkpoint(PASSIVE)");
            if locked {
                ofd_lock(&p.shm, libc::F_UNLCK as i16);
            }
            match stmt.as_mut() {
                Ok(stmt) => stmt
                    .query_row([], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    })
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        drop(db_writeback);
        match ran {
            Ok((0, log, done)) => self.record(started, log, done, None),
            Ok((_, log, done)) => self.record(
                started,
                log.max(0),
                done.max(0),
                Some("another checkpoint was running; the application's own checkpoint did the rest".into()),
            ),
            Err(e) => self.record(started, 0, 0, Some(e)),
        }
        // The connection and the `-wal` descriptor close with `p`; the `-shm` and database
        // descriptors stay open (see the module docs).
        drop(p);
    }

    fn record(&self, started: Instant, wal_frames: i64, checkpointed_frames: i64, error: Option<String>) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(Checkpoint {
            wal_frames,
            checkpointed_frames,
            ms: started.elapsed().as_millis() as u64,
            error,
            after_ms: (started - self.taken).as_millis() as u64,
        });
    }

    /// What the checkpoint did, once it ran.
    pub(crate) fn outcome(&self) -> Option<Checkpoint> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

fn prepare(source: &Path) -> Result<Prepared, String> {
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::ZERO).map_err(|e| e.to_string())?;
    conn.prepare_cached("PRAGMA wal_checkpoint(PASSIVE)")
        .map_err(|e| e.to_string())?;
    let side = |suffix: &str| crate::fsutil::sidecar(source, suffix);
    let kept = |p: &Path, write| {
        crate::fsutil::kept_open(p, write).map_err(|e| format!("open {}: {e}", p.display()))
    };
    let shm = kept(&side("-shm"), true)?;
    let db = kept(source, false)?;
    let wal = File::open(side("-wal")).ok();
    let wal_writeback = wal
        .as_ref()
        .and_then(|w| Writeback::start(w, Duration::from_millis(100)));
    Ok(Prepared {
        wal_writeback,
        conn,
        shm,
        db,
        _wal: wal,
    })
}

/// Takes (`F_WRLCK`) or drops (`F_UNLCK`) an open-file-description lock on the checkpointer
/// byte of `shm`, without waiting; true when done.
fn ofd_lock(shm: &File, kind: i16) -> bool {
    use std::os::unix::io::AsRawFd;
    #[cfg(target_os = "linux")]
    {
        // SAFETY: fcntl on an open descriptor with an initialised flock.
        unsafe {
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = kind;
            fl.l_whence = libc::SEEK_SET as i16;
            fl.l_start = CKPT_LOCK_BYTE;
            fl.l_len = 1;
            libc::fcntl(shm.as_raw_fd(), libc::F_OFD_SETLK, &fl) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (shm.as_raw_fd(), kind);
        false
    }
}

/// Asks the kernel every `every` to start writing a file's dirty pages to disk, from a thread of
/// its own, until dropped. It uses the caller's descriptor, which must outlive it.
struct Writeback {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writeback {
    fn start(file: &File, every: Duration) -> Option<Writeback> {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("writeback".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    start_writeback(fd);
                    std::thread::park_timeout(every);
                }
            })
            .ok()?;
        Some(Writeback {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn start_writeback(fd: std::os::unix::io::RawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: a descriptor kept open by the owner of the Writeback until it is dropped; the
    // call only schedules writeback of dirty pages.
    unsafe {
        libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}
