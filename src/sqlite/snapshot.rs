//! Consistent snapshots of a live database into a private temp file.
//!
//! Owns the copy loop over SQLite's online backup API (written here rather than taken from
//! rusqlite, whose loop retries forever, cannot see restarts and ignores the result of
//! `sqlite3_backup_finish`) and the `VACUUM INTO` alternative. Promises: the snapshot is
//! transactionally consistent even while other processes write; the source is opened read-only
//! and never written; WAL-mode writers are never blocked; the copy always finishes.
//!
//! Two ways to take it. `begin_live` (page copies of WAL databases, the common case) holds
//! one read transaction on the source and hands out everything a backup needs from that one
//! snapshot: header state, row counts and checks (on a second connection proven to be on the
//! same snapshot, so they run in parallel) and then every page in order through SQLite's
//! `sqlite_dbpage` table, straight into the archive, with no temp copy. [`take`] copies into a
//! private temp file; it serves rollback-journal sources, `VACUUM INTO`, and builds of SQLite
//! without `sqlite_dbpage`.
//!
//! How it stays consistent and finishes: in WAL mode the whole copy runs inside one read
//! transaction of the source connection (writers carry on; only checkpoints wait). In
//! rollback-journal mode a read transaction blocks writers, so pages are copied in short steps
//! that release the lock between them; another process's commit makes SQLite restart the copy,
//! and after a few restarts (or a deadline) the rest is copied inside one read transaction so a
//! busy writer cannot starve the backup.

use std::io::Write;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{ffi, Connection};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sqlite::db::{self, DbInfo};

/// How the snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// SQLite's online backup API: a page-for-page copy, pages byte-identical to the source.
    #[default]
    Pages,
    /// `VACUUM INTO`: a compacted, defragmented copy (costs more CPU; always rollback-journal
    /// mode).
    Vacuum,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Pages => "pages",
            Method::Vacuum => "vacuum",
        })
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pages" => Ok(Method::Pages),
            "vacuum" => Ok(Method::Vacuum),
            _ => Err(Error::InvalidOption(format!(
                "unknown method {s:?} (pages, vacuum)"
            ))),
        }
    }
}

/// Facts about how a snapshot was taken, recorded in the manifest and the backup report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// The method used.
    pub method: Method,
    /// The source's journal mode at the time ("wal", "delete", ...).
    pub source_journal_mode: String,
    /// How many times the copy restarted because another process wrote to the source.
    pub restarts: u32,
    /// Whether the copy finished inside one read transaction after restarts or a deadline
    /// (in rollback-journal mode this briefly holds writers off).
    pub finished_in_one_transaction: bool,
    /// Milliseconds the snapshot took.
    pub duration_ms: u64,
}

/// A snapshot file in a private temp directory, deleted when dropped.
#[derive(Debug)]
pub struct Snapshot {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// How it was taken.
    pub stats: SnapshotStats,
}

impl Snapshot {
    /// The snapshot database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Tuning of the copy loop; the defaults suit interactive use.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    /// Rollback-journal mode: restarts tolerated before finishing in one read transaction.
    pub max_restarts: u32,
    /// Rollback-journal mode: time after which the rest is copied in one read transaction.
    pub step_deadline: Duration,
    /// How long to wait for a writer that keeps the source locked before giving up.
    pub busy_timeout: Duration,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        SnapshotLimits {
            max_restarts: 3,
            step_deadline: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// A WAL database held at one snapshot by a read transaction on its source connection, from
/// which a backup reads the manifest's facts, runs its checks and streams every page. Other
/// processes keep writing meanwhile (their commits go to the WAL); only checkpoints wait until
/// the transaction ends, when this is dropped or [`LiveSnapshot::finish`]ed.
pub(crate) struct LiveSnapshot {
    conn: Connection,
    /// Who still holds the snapshot (this connection and the checkers); the last to let go
    /// starts the source's catch-up checkpoint.
    holders: Arc<Holders>,
    /// Whether `conn` has ended its read transaction.
    main_released: AtomicBool,
    /// Two more connections whose read transactions are on the same snapshot, for checks that
    /// run while `conn` streams the pages; none when a writer kept committing while they were
    /// opened.
    checkers: Vec<Connection>,
    source: PathBuf,
    page_size: u32,
    page_count: u64,
    page1: Vec<u8>,
    started: Instant,
}

pub use crate::sqlite::catchup::Checkpoint;
use crate::sqlite::catchup::Holders;

/// Tries at getting the checkers' read transactions on the main connection's snapshot.
const SAME_SNAPSHOT_ATTEMPTS: u32 = 50;

/// `PRAGMA data_version` of a connection: changes when another connection has committed
/// since this connection's previous read transaction.
fn data_version(conn: &Connection, source: &Path) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(|e| Error::sqlite("read data_version of", source, e))
}

/// Holds `source` at one snapshot for a streamed page copy, when that is possible: `method` is
/// [`Method::Pages`], the source is in WAL mode (a read transaction does not block its writers)
/// and this SQLite build has `sqlite_dbpage`. `Ok(None)` means "use [`take`]".
pub(crate) fn begin_live(source: &Path, method: Method, checkpoint: bool) -> Result<Option<LiveSnapshot>> {
    if method != Method::Pages {
        return Ok(None);
    }
    let started = Instant::now();
    let conn = db::open_source(source)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| Error::sqlite("read journal mode of", source, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Ok(None);
    }
    if conn
        .prepare("SELECT data FROM sqlite_dbpage WHERE pgno = 1")
        .is_err()
    {
        return Ok(None); // built without SQLITE_ENABLE_DBPAGE_VTAB
    }
    // Read transactions on the same snapshot: the checkers' start between two reads of the
    // main connection, and if the main connection's data_version did not move, nobody
    // committed in between, so all of them see the same database state. The connections are
    // opened first, so that the window is only three transaction starts wide; a writer that
    // commits back to back can still hit it, then it is tried again, and after many misses
    // the checks run on the main connection instead.
    let mut checkers = vec![db::open_source(source)?, db::open_source(source)?];
    let mut shared = false;
    for _ in 0..SAME_SNAPSHOT_ATTEMPTS {
        let before = data_version(&conn, source)?;
        for c in &checkers {
            begin_read(c, source)?;
        }
        begin_read(&conn, source)?;
        if data_version(&conn, source)? == before {
            shared = true;
            break;
        }
        for c in checkers.iter().chain([&conn]) {
            let _ = c.execute_batch("COMMIT");
        }
    }
    if !shared {
        checkers.clear();
        begin_read(&conn, source)?;
    }
    let int = |sql: &str| -> Result<i64> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| Error::sqlite("read page count of", source, e))
    };
    let page_size = int("PRAGMA page_size")? as u32;
    let page_count = int("PRAGMA page_count")? as u64;
    let page1: Vec<u8> = conn
        .query_row("SELECT data FROM sqlite_dbpage WHERE pgno = 1", [], |r| r.get(0))
        .map_err(|e| Error::sqlite("read page 1 of", source, e))?;
    if page1.len() != page_size as usize || page1.len() < 100 {
        return Err(Error::CorruptDatabase {
            path: source.to_path_buf(),
            detail: format!("page 1 is {} bytes, page size {page_size}", page1.len()),
        });
    }
    // The checkers are let go together, by the thread that ran the checks on them.
    let holders = Arc::new(Holders::new(
        source,
        if checkers.is_empty() { 1 } else { 2 },
        checkpoint,
    ));
    Ok(Some(LiveSnapshot {
        conn,
        holders,
        main_released: AtomicBool::new(false),
        checkers,
        source: source.to_path_buf(),
        page_size,
        page_count,
        page1,
        started,
    }))
}

impl LiveSnapshot {
    /// The source connection, inside its read transaction.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Who holds the snapshot: a caller of [`Self::take_checkers`] calls
    /// [`Holders::release`] once it has dropped both connections.
    pub(crate) fn holders(&self) -> Arc<Holders> {
        self.holders.clone()
    }

    /// Ends the main connection's read transaction (once).
    pub(crate) fn release_main(&self) {
        if !self.main_released.swap(true, Ordering::SeqCst) {
            self.holders.release_with(|| {
                let _ = self.conn.execute_batch("COMMIT");
            });
        }
    }

    /// Takes the two other connections on the same snapshot, when there are.
    pub(crate) fn take_checkers(&mut self) -> Option<(Connection, Connection)> {
        let second = self.checkers.pop()?;
        let first = self.checkers.pop()?;
        Some((first, second))
    }

    /// The source database's path.
    pub(crate) fn source(&self) -> &Path {
        &self.source
    }

    /// Page 1 as read at this snapshot.
    pub(crate) fn page1(&self) -> &[u8] {
        &self.page1
    }

    /// The snapshot's page size.
    pub(crate) fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Bytes of the database at this snapshot.
    pub(crate) fn db_size(&self) -> u64 {
        self.page_count * self.page_size as u64
    }

    /// Header state and row counts at this snapshot (the journal mode from page 1, as a page
    /// copy has it).
    pub(crate) fn info(&self) -> Result<DbInfo> {
        DbInfo::read_with_header(&self.conn, &self.source, &self.page1, true)
    }

    /// Writes every page of the snapshot, in order, to `out` (exactly [`Self::db_size`] bytes):
    /// the same bytes as a backup-API copy, page 1 included. The lock-byte page of a database
    /// over 1 GiB, which SQLite never uses, is written as zeros. `out_path` names `out` in
    /// errors. Ends the read transaction of the main connection once the last page is read.
    ///
    /// While the read transaction lasts, the source's checkpoints cannot pass it, so a busy
    /// writer's WAL grows, and the first checkpoint after it (run inside one of the writer's
    /// commits) has to write all of that: the longer the transaction, the longer that commit.
    /// So when the `-wal` file grows by more than `spill_after` bytes, the remaining pages are
    /// read at full speed into a temp file in `spill_dir` (no faster than SQLite reads them,
    /// instead of at the compressor's pace), the transaction ends, and `out` gets them from
    /// there.
    pub(crate) fn write_pages(
        &self,
        out: &mut dyn Write,
        out_path: &Path,
        spill_dir: &Path,
        spill_after: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.write_pages_then(out, out_path, spill_dir, spill_after, progress, true)
    }

    /// [`Self::write_pages`], leaving the read transaction open unless `end_transaction` (for
    /// a first pass that only hashes the pages, before a second one on the same snapshot).
    pub(crate) fn write_pages_then(
        &self,
        out: &mut dyn Write,
        out_path: &Path,
        spill_dir: &Path,
        spill_after: u64,
        progress: &dyn Progress,
        end_transaction: bool,
    ) -> Result<()> {
        let e = |err| Error::sqlite("read pages of", &self.source, err);
        let wal_path = crate::fsutil::sidecar(&self.source, "-wal");
        let wal_size = || std::fs::metadata(&wal_path).map(|m| m.len()).unwrap_or(0);
        let wal_at_start = wal_size();
        let mut spill: Option<(
            tempfile::NamedTempFile,
            std::io::BufWriter<crate::fsutil::WritebackFile>,
        )> = None;
        {
            let mut stmt = self
                .conn
                .prepare("SELECT pgno, data FROM sqlite_dbpage")
                .map_err(e)?;
            let mut rows = stmt.query([]).map_err(e)?;
            let mut expected: u64 = 1;
            let mut unreported: u64 = 0;
            while let Some(row) = rows.next().map_err(e)? {
                let pgno = row.get::<_, i64>(0).map_err(e)?;
                let data = row
                    .get_ref(1)
                    .map_err(e)?
                    .as_blob()
                    .map_err(|err| e(err.into()))?;
                if pgno as u64 != expected || data.len() != self.page_size as usize {
                    return Err(Error::CorruptDatabase {
                        path: self.source.clone(),
                        detail: format!(
                            "sqlite_dbpage returned page {pgno} of {} bytes where page {expected} of {} was due",
                            data.len(),
                            self.page_size
                        ),
                    });
                }
                match spill.as_mut() {
                    Some((tmp, w)) => w
                        .write_all(data)
                        .map_err(|err| Error::io("write temp file", tmp.path(), err))?,
                    None => out
                        .write_all(data)
                        .map_err(|err| Error::io("write archive", out_path, err))?,
                }
                expected += 1;
                unreported += data.len() as u64;
                if unreported >= 1 << 20 {
                    crate::progress::step(progress, unreported)?;
                    unreported = 0;
                    if spill.is_none() && wal_size().saturating_sub(wal_at_start) > spill_after {
                        let rest = (self.page_count + 1 - expected) * self.page_size as u64;
                        if crate::fsutil::free_space(spill_dir).unwrap_or(0) > rest + (64 << 20) {
                            crate::fsutil::note_temp_dir(spill_dir);
                            let tmp = tempfile::Builder::new()
                                .prefix(&crate::fsutil::temp_prefix())
                                .suffix(".pages")
                                .tempfile_in(spill_dir)
                                .map_err(|err| Error::io("create temp file in", spill_dir, err))?;
                            let f = tmp.reopen().map_err(|err| Error::io("open", tmp.path(), err))?;
                            spill = Some((
                                tmp,
                                std::io::BufWriter::with_capacity(
                                    1 << 20,
                                    crate::fsutil::WritebackFile::new(f),
                                ),
                            ));
                        }
                    }
                }
            }
            crate::progress::step(progress, unreported)?;
            if expected - 1 != self.page_count {
                return Err(Error::CorruptDatabase {
                    path: self.source.clone(),
                    detail: format!(
                        "sqlite_dbpage returned {} pages, the snapshot has {}",
                        expected - 1,
                        self.page_count
                    ),
                });
            }
        }
        // Every page is read: the source's checkpoints may go on.
        if end_transaction {
            self.release_main();
        }
        if let Some((tmp, w)) = spill {
            let f = w
                .into_inner()
                .map_err(|err| Error::io("write temp file", tmp.path(), err.into_error()))?;
            drop(f);
            let mut r = std::fs::File::open(tmp.path()).map_err(|err| Error::io("open", tmp.path(), err))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = std::io::Read::read(&mut r, &mut buf)
                    .map_err(|err| Error::io("read temp file", tmp.path(), err))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])
                    .map_err(|err| Error::io("write archive", out_path, err))?;
            }
        }
        Ok(())
    }

    /// Ends the read transaction and says how the snapshot was taken.
    pub(crate) fn finish(&self) -> SnapshotStats {
        self.release_main();
        SnapshotStats {
            method: Method::Pages,
            source_journal_mode: "wal".into(),
            restarts: 0,
            finished_in_one_transaction: true,
            duration_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Takes a consistent snapshot of `source` into a new private directory under `work_dir`.
pub fn take(
    source: &Path,
    work_dir: &Path,
    method: Method,
    limits: SnapshotLimits,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let started = Instant::now();
    let src = db::open_source(source)?;
    let source_journal_mode: String = src
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| Error::sqlite("read journal mode of", source, e))?;
    let dir = crate::fsutil::temp_dir_in(work_dir)?;
    let path = dir.path().join("snapshot.sqlite");
    let mut stats = SnapshotStats {
        method,
        source_journal_mode: source_journal_mode.to_ascii_lowercase(),
        restarts: 0,
        finished_in_one_transaction: false,
        duration_ms: 0,
    };
    match method {
        Method::Pages => copy_pages(&src, source, &path, limits, &mut stats, progress)?,
        Method::Vacuum => vacuum_into(&src, source, &path, limits, progress)?,
    }
    stats.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Snapshot {
        _dir: dir,
        path,
        stats,
    })
}

fn vacuum_into(
    src: &Connection,
    source: &Path,
    dest: &Path,
    limits: SnapshotLimits,
    progress: &dyn Progress,
) -> Result<()> {
    progress.begin("snapshot (vacuum into)", None);
    let dest_str = dest
        .to_str()
        .ok_or_else(|| Error::InvalidOption(format!("temp path is not UTF-8: {}", dest.display())))?;
    // VACUUM INTO attaches its output internally; our own statement on the user's own database,
    // so lift the no-ATTACH hardening for it.
    src.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 1)
        .map_err(|e| Error::sqlite("configure", source, e))?;
    src.execute("VACUUM INTO ?1", [dest_str])
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) => Error::InUse {
                path: source.to_path_buf(),
                detail: format!("a writer kept it locked for {} s", limits.busy_timeout.as_secs()),
            },
            _ => Error::sqlite("VACUUM INTO from", source, e),
        })?;
    progress.end();
    Ok(())
}

fn copy_pages(
    src: &Connection,
    source: &Path,
    dest: &Path,
    limits: SnapshotLimits,
    stats: &mut SnapshotStats,
    progress: &dyn Progress,
) -> Result<()> {
    let dst = Connection::open(dest).map_err(|e| Error::sqlite("create snapshot", dest, e))?;
    // The snapshot is a scratch file: the archive is what gets fsynced.
    dst.execute_batch("PRAGMA synchronous=OFF")
        .map_err(|e| Error::sqlite("configure snapshot", dest, e))?;
    let page_size: i64 = src
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| Error::sqlite("read page size of", source, e))?;
    // Steps of about 4 MiB: short lock holds in rollback mode, fine-grained progress.
    let pages_per_step = ((4 << 20) / page_size.max(512)).max(1) as c_int;

    let mut backup = RawBackup::new(&dst, src).map_err(|e| Error::sqlite("start backup of", source, e))?;
    let wal = stats.source_journal_mode == "wal";
    let mut in_txn = false;
    if wal {
        begin_read(src, source)?;
        in_txn = true;
        stats.finished_in_one_transaction = true;
    }
    let started = Instant::now();
    let mut busy_since: Option<Instant> = None;
    let mut last_remaining: Option<c_int> = None;
    let mut begun = false;
    let result = loop {
        let rc = backup.step(pages_per_step);
        match rc {
            ffi::SQLITE_DONE => break Ok(()),
            ffi::SQLITE_OK => {
                busy_since = None;
                let (remaining, total) = (backup.remaining(), backup.pagecount());
                if !begun {
                    progress.begin("snapshot", Some(total as u64 * page_size as u64));
                    begun = true;
                }
                if let Err(e) = crate::progress::step(progress, pages_per_step as u64 * page_size as u64) {
                    break Err(e);
                }
                if let Some(last) = last_remaining {
                    // No net progress means another process wrote and SQLite started over.
                    if remaining >= last {
                        stats.restarts += 1;
                    }
                }
                last_remaining = Some(remaining);
                if !in_txn
                    && (stats.restarts >= limits.max_restarts || started.elapsed() >= limits.step_deadline)
                {
                    // Copy what is left inside one read transaction: no more restarts.
                    begin_read(src, source)?;
                    in_txn = true;
                    stats.finished_in_one_transaction = true;
                }
                if !in_txn {
                    // Let writers take the lock between steps.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= limits.busy_timeout {
                    break Err(Error::InUse {
                        path: source.to_path_buf(),
                        detail: format!("a writer kept it locked for {} s", limits.busy_timeout.as_secs()),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => break Err(Error::sqlite("copy pages of", source, backup.error(&dst, rc))),
        }
    };
    let finish_rc = backup.finish();
    if in_txn {
        let _ = src.execute_batch("COMMIT");
    }
    if begun {
        progress.end();
    }
    result?;
    if finish_rc != ffi::SQLITE_OK {
        return Err(Error::sqlite(
            "finish backup of",
            source,
            sqlite_error(&dst, finish_rc),
        ));
    }
    Ok(())
}

/// Starts a read transaction on the source connection; the backup then reads every page from
/// that one snapshot.
fn begin_read(src: &Connection, source: &Path) -> Result<()> {
    src.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| Error::sqlite("begin read transaction on", source, e))
}

/// An `sqlite3_backup` handle whose `finish` result is checked, not dropped.
struct RawBackup {
    ptr: *mut ffi::sqlite3_backup,
}

impl RawBackup {
    fn new(dst: &Connection, src: &Connection) -> rusqlite::Result<RawBackup> {
        let main = c"main";
        // SAFETY: both handles are open connections that outlive the backup (it is finished
        // before either is dropped); the names are NUL-terminated.
        let ptr =
            unsafe { ffi::sqlite3_backup_init(dst.handle(), main.as_ptr(), src.handle(), main.as_ptr()) };
        if ptr.is_null() {
            // SAFETY: dst.handle() is a valid connection.
            let rc = unsafe { ffi::sqlite3_errcode(dst.handle()) };
            return Err(sqlite_error(dst, rc));
        }
        Ok(RawBackup { ptr })
    }

    fn step(&mut self, pages: c_int) -> c_int {
        // SAFETY: ptr is a live backup handle until finish.
        unsafe { ffi::sqlite3_backup_step(self.ptr, pages) }
    }

    fn remaining(&self) -> c_int {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_backup_remaining(self.ptr) }
    }

    fn pagecount(&self) -> c_int {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_backup_pagecount(self.ptr) }
    }

    fn error(&self, dst: &Connection, rc: c_int) -> rusqlite::Error {
        sqlite_error(dst, rc)
    }

    fn finish(mut self) -> c_int {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        // SAFETY: ptr is live and finished exactly once (Drop sees null afterwards).
        unsafe { ffi::sqlite3_backup_finish(ptr) }
    }
}

impl Drop for RawBackup {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: live handle, finished once.
            unsafe { ffi::sqlite3_backup_finish(self.ptr) };
        }
    }
}

/// Builds a rusqlite error from a result code and the connection's last message (a backup
/// step's failure is not recorded on the connection: then the result code's own text).
fn sqlite_error(conn: &Connection, rc: c_int) -> rusqlite::Error {
    // SAFETY: valid connection; errmsg and errstr return NUL-terminated strings owned by
    // SQLite.
    let msg = unsafe {
        let p = ffi::sqlite3_errmsg(conn.handle());
        let last = (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned());
        match last {
            Some(m) if m != "not an error" => Some(m),
            _ => {
                let p = ffi::sqlite3_errstr(rc);
                (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        }
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), msg)
}

/// Copies the database `from` into the existing database `to` through SQLite, so that other
/// connections to `to` see the new content on their next transaction and a crash leaves `to`
/// wholly old or wholly new (SQLite's own journal or WAL protects the copy). Waits up to
/// `busy_timeout` for other connections' locks.
///
/// `before` runs first (it takes the safety archive). Then the target's write lock is taken,
/// and `version` (which must not use `to`: a connection that is the destination of a backup
/// cannot run statements) tells whether anyone committed to the target since just before
/// `before` ran: if so, nothing is copied, the lock is released and `before` runs again, so the
/// safety archive always holds exactly what the copy replaces.
pub(crate) fn copy_into_live(
    from: &Connection,
    to: &Connection,
    to_path: &Path,
    busy_timeout: Duration,
    version: &dyn Fn() -> Result<i64>,
    before: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let data_version = version;
    // Only time spent waiting for a lock counts against `busy_timeout` (not the safety
    // archive's), and `to` must not wait in a busy handler of its own: SQLite's step then
    // returns BUSY at once and the loop below decides.
    let mut waited = Duration::ZERO;
    for _ in 0..ATTEMPTS {
        let seen = data_version()?;
        before()?;
        to.busy_timeout(Duration::ZERO)
            .map_err(|e| Error::sqlite("configure", to_path, e))?;
        let mut waiting_since: Option<Instant> = None;
        let mut backup =
            RawBackup::new(to, from).map_err(|e| Error::sqlite("start restore into", to_path, e))?;
        let mut pages: c_int = 0;
        let result = loop {
            match backup.step(pages) {
                ffi::SQLITE_DONE => break Ok(true),
                // The first step took the target's write lock, which the backup keeps.
                ffi::SQLITE_OK if pages == 0 => match data_version() {
                    Ok(v) if v == seen => pages = -1,
                    Ok(_) => break Ok(false),
                    Err(e) => break Err(e),
                },
                ffi::SQLITE_OK => continue,
                rc @ (ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED) => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    let total = waited + since.elapsed();
                    if total >= busy_timeout {
                        break Err(Error::InUse {
                            path: to_path.to_path_buf(),
                            detail: format!(
                                "another connection held a lock for {:.1} s, longer than the busy timeout of {} s ({})",
                                total.as_secs_f64(),
                                busy_timeout.as_secs_f64(),
                                sqlite_error(to, rc)
                            ),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                rc => break Err(Error::sqlite("restore into", to_path, backup.error(to, rc))),
            }
        };
        if let Some(since) = waiting_since {
            waited += since.elapsed();
        }
        // Finishing an unfinished backup rolls the target's transaction back: nothing changed.
        let finish_rc = backup.finish();
        match result {
            Ok(true) if finish_rc == ffi::SQLITE_OK => return Ok(()),
            Ok(true) => {
                return Err(Error::sqlite(
                    "finish restore into",
                    to_path,
                    sqlite_error(to, finish_rc),
                ))
            }
            Ok(false) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::InUse {
        path: to_path.to_path_buf(),
        detail: format!(
            "another process kept writing to it while its safety archive was taken ({ATTEMPTS} tries)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn make_db(path: &Path, wal: bool) {
        let c = Connection::open(path).unwrap();
        if wal {
            c.pragma_update(None, "journal_mode", "wal").unwrap();
        }
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000)
             INSERT INTO t(v) SELECT hex(randomblob(100)) FROM n;",
        )
        .unwrap();
    }

    #[test]
    fn snapshot_copies_every_row_in_both_journal_modes() {
        for wal in [false, true] {
            for method in [Method::Pages, Method::Vacuum] {
                let d = tempfile::tempdir().unwrap();
                let src = d.path().join("src.db");
                make_db(&src, wal);
                let snap = take(&src, d.path(), method, SnapshotLimits::default(), &NoProgress).unwrap();
                let c = Connection::open(snap.path()).unwrap();
                let n: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
                assert_eq!(n, 5000, "wal={wal} method={method}");
                assert_eq!(snap.stats.source_journal_mode, if wal { "wal" } else { "delete" });
            }
        }
    }

    #[test]
    fn live_snapshot_checkers_and_pages_match_the_snapshot_under_a_writer() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        make_db(&src, true);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (src, stop) = (src.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Connection::open(&src).unwrap();
                c.busy_timeout(Duration::from_secs(5)).unwrap();
                let mut commits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.execute("INSERT INTO t(v) VALUES (hex(randomblob(500)))", [])
                        .unwrap();
                    commits += 1;
                    std::thread::sleep(Duration::from_micros(300));
                }
                commits
            })
        };
        let state = |c: &Connection| -> (i64, i64) {
            c.query_row("SELECT count(*), max(id) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        let mut shared = 0;
        for i in 0..20 {
            let mut live = begin_live(&src, Method::Pages, false)
                .unwrap()
                .expect("WAL source streams");
            let seen = state(live.conn());
            std::thread::sleep(Duration::from_millis(3)); // the writer commits meanwhile
            if let Some((a, b)) = live.take_checkers() {
                assert_eq!(state(&a), seen, "first checker on another snapshot");
                assert_eq!(state(&b), seen, "second checker on another snapshot");
                shared += 1;
            }
            let mut pages = Vec::new();
            // Spill after any WAL growth at all on every other round.
            let spill_after = if i % 2 == 0 { 0 } else { u64::MAX };
            live.write_pages(
                &mut pages,
                Path::new("memory"),
                d.path(),
                spill_after,
                &NoProgress,
            )
            .unwrap();
            assert_eq!(pages.len() as u64, live.db_size());
            live.finish();
            let copy = d.path().join(format!("copy-{i}.db"));
            std::fs::write(&copy, &pages).unwrap();
            let c = Connection::open(&copy).unwrap();
            assert_eq!(state(&c), seen, "streamed pages hold the snapshot's rows");
            let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok");
        }
        stop.store(true, Ordering::Relaxed);
        let commits = writer.join().unwrap();
        assert!(commits > 20, "the writer kept committing ({commits})");
        assert!(shared > 0, "no snapshot got its checkers while the writer paused");
    }

    #[test]
    fn rollback_sources_are_not_streamed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        make_db(&src, false);
        assert!(begin_live(&src, Method::Pages, false).unwrap().is_none());
        let wal = d.path().join("wal.db");
        make_db(&wal, true);
        assert!(begin_live(&wal, Method::Vacuum, false).unwrap().is_none());
        assert!(begin_live(&wal, Method::Pages, false).unwrap().is_some());
    }

    #[test]
    fn snapshot_dir_is_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        make_db(&src, false);
        let work = d.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let snap = take(&src, &work, Method::Pages, SnapshotLimits::default(), &NoProgress).unwrap();
        assert!(snap.path().exists());
        drop(snap);
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    }

    #[test]
    fn source_is_not_modified() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.db");
        make_db(&src, false);
        let before = std::fs::read(&src).unwrap();
        let _snap = take(
            &src,
            d.path(),
            Method::Pages,
            SnapshotLimits::default(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(before, std::fs::read(&src).unwrap());
    }
}
