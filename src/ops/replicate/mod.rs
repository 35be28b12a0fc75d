//! Continuous replication (`litevault replicate`): the [`Replicator`] reads each committed
//! transaction's frames from the database's `-wal` as they appear and ships them, once an
//! interval, as segments ([`crate::format::segment`]) that continue a base archive of the same
//! location. How it reads the WAL without holding the application up, and what a gap is, is in
//! docs/replication.md; in short:
//!
//! - a poll costs two small reads of the `-wal` when nothing was committed;
//! - new frames are read without any lock, each proven by the WAL's running checksum: nothing
//!   the application does waits for the replicator, and the `-wal` never grows because of it;
//! - after the application restarted the WAL, the frames of the old generation not yet read
//!   are taken from the file where the new generation has not overwritten them (the checksum
//!   chain proves each, and the new generation's salts where the old chain ends tell whether
//!   any was overwritten);
//! - anything else (frames overwritten before they were read, the `-wal` deleted or truncated,
//!   several restarts between two polls, a new page size) is a gap: the replicator takes a new
//!   base (a page-hash incremental of the last one) and starts a new stream from it. A point
//!   inside a gap cannot be restored; nothing is ever invented;
//! - a base is a private copy of the database file made without a lock, with the frames of the
//!   current WAL generation replayed onto it, backed up by the shipping pool (see
//!   `Replicator::resync`): the application's checkpoints do not wait for a base (except in
//!   the fallback cases named there, where a base is read under a read transaction).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::format::segment;
use crate::location::{self, Location};
use crate::ops::backup::{self, ArchiveOptions, BackupOptions, Destination, Format};
use crate::ops::Context;
use crate::progress::NoProgress;
use crate::sqlite::wal::{self, Cursor, WalHeader};

mod ship;
mod status;

pub use status::ReplicateStatus;

use ship::{NewBase, Sealed, Shipment, Shipper, Written};

/// Why a new base is taken when the stream is old enough (not a gap).
const SCHEDULED: &str = "a scheduled new base";

/// A full base once a chain of bases has this many links.
const BASE_FULL_EVERY: u32 = 8;

/// Options of [`Replicator`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ReplicateOptions {
    /// The location the bases and segments go to.
    pub to: PathBuf,
    /// The name of the backups (default: the database's file stem).
    pub name: Option<String>,
    /// How often the transactions read are shipped (one segment at most per interval).
    pub interval: Duration,
    /// A segment is shipped early once it holds this many bytes of pages.
    pub max_segment_bytes: usize,
    /// Frames waiting for a location that cannot take them are dropped past this many bytes
    /// (then a new base is taken once it can): memory stays bounded.
    pub max_pending_bytes: usize,
    /// Encrypt the bases and every segment (age).
    pub encrypt: Option<crate::format::crypt::Encryption>,
    /// A new base (a page-hash incremental of the last) once a stream is this old: a restore
    /// reads a base chain and at most this much history of segments. `None`: only after gaps.
    pub base_every: Option<Duration>,
}

impl ReplicateOptions {
    /// Options with the defaults: every second, 16 MiB segments, 256 MiB waiting at most.
    pub fn new(to: impl Into<PathBuf>) -> ReplicateOptions {
        ReplicateOptions {
            to: to.into(),
            name: None,
            interval: Duration::from_secs(1),
            max_segment_bytes: 16 << 20,
            max_pending_bytes: 256 << 20,
            encrypt: None,
            base_every: Some(Duration::from_secs(600)),
        }
    }
}

/// The current stream: a base and the segments after it.
#[derive(Debug)]
struct Stream {
    /// Which stream of this replicator's (the shipper learns its base's name when it has it).
    id: u64,
    /// When its base was taken.
    started: Instant,
    next_seq: u64,
    txid: u64,
    /// `txid` when the base was settled: the transactions the base itself holds (the current
    /// WAL generation's, read from its start). A scheduled new base waits for one after them.
    base_txid: u64,
    page_size: u32,
}

/// Reads a WAL database's committed transactions and ships them to a location.
pub struct Replicator {
    ctx: Context,
    source: PathBuf,
    wal_path: PathBuf,
    name: String,
    loc: Arc<dyn Location>,
    opts: ReplicateOptions,
    conn: Connection,
    wal: Option<(Arc<File>, u64)>,
    cursor: Option<Cursor>,
    /// The length of the `-wal` when it was last read (a shorter one was truncated).
    wal_len: u64,
    stream: Option<Stream>,
    builder: segment::Builder,
    /// The gathered segment is segment 0 of its stream (frames the base may hold).
    prefix: bool,
    gap: Option<String>,
    /// The read transaction of a base taken without a WAL generation is still held.
    pinned: bool,
    /// A base is being copied: the WAL is read whole at each look (every frame must reach the
    /// copy's segment 0).
    basing: bool,
    /// The id of the next stream.
    next_stream: u64,
    /// Bases are taken the slow way until one is (a copy was overtaken by a gap, or could not
    /// be backed up).
    slow_base: bool,
    /// The buffer the `-wal` is read into.
    scratch: Vec<u8>,
    /// Looks in a row that found nothing new (the pause before the next grows with it).
    idle: u32,
    /// The last error [`Replicator::tick`] reported (each is said once).
    said: Option<String>,
    last_ship: Instant,
    status: Arc<Mutex<ReplicateStatus>>,
    shipper: Option<Shipper>,
    /// The streams as the shippers left them (a queue made after a flush goes on).
    written: Arc<Mutex<Written>>,
}

/// Milliseconds since the epoch (0 before it): the clock of transactions' read times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn sql_err<'a>(path: &'a Path, what: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| Error::sqlite(what, path, e)
}

impl Replicator {
    /// Opens `source` (a database in WAL mode) for replication to `opts.to`. Nothing is read or
    /// shipped before the first [`Replicator::poll`].
    pub fn new(ctx: &Context, source: &Path, opts: ReplicateOptions) -> Result<Replicator> {
        crate::sqlite::db::precheck(source)?;
        let source = std::path::absolute(source).map_err(|e| Error::io("resolve", source, e))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&source, flags).map_err(sql_err(&source, "open"))?;
        crate::sqlite::db::lean(&conn, &source)?;
        crate::sqlite::db::harden(&conn, &source)?;
        // Closing the last connection must not checkpoint the application's WAL away.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(sql_err(&source, "configure"))?;
        conn.busy_timeout(Duration::from_millis(200))
            .map_err(sql_err(&source, "configure"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sql_err(&source, "read the journal mode of"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::InvalidOption(format!(
                "{} is in journal mode {mode}: replication reads the WAL, so it needs WAL mode \
                 (`PRAGMA journal_mode=WAL`, once, by the application); for a database that stays \
                 in {mode} mode, schedule `litevault backup --incremental` instead",
                source.display()
            )));
        }
        let name = opts.name.clone().unwrap_or_else(|| location::name_of(&source));
        let loc = location::open(&opts.to)?;
        // The base copies a killed replicator left beside the database go first.
        crate::fsutil::sweep_leftovers(&crate::fsutil::parent_dir(&source));
        let mut wal_path = source.clone().into_os_string();
        wal_path.push("-wal");
        let status = ReplicateStatus {
            source: source.clone(),
            location: loc.url(),
            ..Default::default()
        };
        Ok(Replicator {
            ctx: ctx.clone(),
            wal_path: wal_path.into(),
            source,
            name,
            loc,
            opts,
            conn,
            wal: None,
            cursor: None,
            wal_len: 0,
            stream: None,
            builder: segment::Builder::default(),
            prefix: false,
            gap: Some("the first base".into()),
            pinned: false,
            basing: false,
            next_stream: 0,
            slow_base: false,
            scratch: Vec::new(),
            idle: 0,
            said: None,
            last_ship: Instant::now(),
            status: Arc::new(Mutex::new(status)),
            shipper: None,
            written: Arc::default(),
        })
    }

    /// The status as it changes, for a caller that watches from another thread.
    pub fn status_handle(&self) -> Arc<Mutex<ReplicateStatus>> {
        self.status.clone()
    }

    /// What has been done so far.
    pub fn status(&self) -> ReplicateStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut ReplicateStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// The options of a base: a page-hash incremental of the last one, into the location.
    fn base_options(&self) -> BackupOptions {
        BackupOptions {
            destination: Destination::Location {
                dir: Some(self.opts.to.clone()),
                tag: None,
            },
            format: Format::Archive(ArchiveOptions {
                incremental: true,
                // Chains stay short: restores compose few links, prune can drop old bases.
                full_every: Some(BASE_FULL_EVERY),
                ..Default::default()
            }),
            name: Some(self.name.clone()),
            no_checkpoint: true,
            encrypt: self.opts.encrypt.clone(),
            ..Default::default()
        }
    }

    /// This replicator's queue of shipments (made at the first use, and again after a flush).
    fn shipper(&mut self) -> &Shipper {
        let shipper = match self.shipper.take() {
            Some(shipper) => shipper,
            None => Shipper::new(ship::Job {
                ctx: self.ctx.clone(),
                loc: self.loc.clone(),
                name: self.name.clone(),
                status: self.status.clone(),
                written: self.written.clone(),
                max: self.opts.max_pending_bytes,
                enc: self.opts.encrypt.clone(),
                base_opts: self.base_options(),
                retry: self
                    .opts
                    .interval
                    .clamp(Duration::from_millis(100), Duration::from_secs(5)),
            }),
        };
        self.shipper.insert(shipper)
    }

    /// The `-wal` file, opened again when it was replaced; `None` when there is none.
    fn wal_file(&mut self) -> Result<Option<Arc<File>>> {
        use std::os::unix::fs::MetadataExt;
        let ino = match std::fs::metadata(&self.wal_path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.wal = None;
                return Ok(None);
            }
            Err(e) => return Err(Error::io("stat", &self.wal_path, e)),
        };
        if self.wal.as_ref().is_none_or(|(_, i)| *i != ino) {
            if self.wal.is_some() && self.cursor.is_some() {
                // A new file: whatever the old one held past the cursor is out of reach.
                self.gap
                    .get_or_insert_with(|| "the -wal file was replaced".into());
            }
            let f = File::open(&self.wal_path).map_err(|e| Error::io("open", &self.wal_path, e))?;
            self.wal = Some((Arc::new(f), ino));
        }
        Ok(self.wal.as_ref().map(|(f, _)| f.clone()))
    }

    fn begin(&self, how: &str) -> Result<()> {
        self.conn
            .execute_batch(how)
            .and_then(|()| {
                self.conn
                    .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))
            })
            .map(drop)
            .map_err(sql_err(&self.source, "begin a transaction on"))
    }

    fn end(&self) {
        let _ = self.conn.execute_batch("COMMIT");
    }

    /// Reads the committed frames of `cur`'s generation from where it is straight into the
    /// segment being gathered; returns whether a transaction was read.
    /// Also returns the index of the frame the reading stopped at.
    /// With `bounded`, it stops at a commit once a segment's worth is gathered (the rest is
    /// read at the next poll); without, it reads to the end of the generation (a restarted WAL's
    /// old generation must be read whole before the cursor moves to the new one).
    fn read_frames(&mut self, wal: &File, cur: &mut Cursor, bounded: bool) -> std::io::Result<(bool, u64)> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok((false, cur.next));
        };
        if cur.page_size != stream.page_size {
            self.gap.get_or_insert_with(|| "the page size changed".into());
            return Ok((false, cur.next));
        }
        // At most a segment's worth at a time (stopping at a commit): memory stays bounded, and
        // the next poll reads on.
        let room = if self.basing {
            // A base's frames wait in memory until the copy is done: at most what may wait.
            (self.opts.max_pending_bytes as u64)
                .saturating_sub(self.builder.bytes() as u64)
                .max(1)
        } else if bounded {
            (self.opts.max_segment_bytes as u64)
                .saturating_sub(self.builder.bytes() as u64)
                .max(1)
        } else {
            u64::MAX
        };
        let (marks, _, stopped_at) =
            wal::read_committed(wal, cur, room, self.builder.frames_mut(), &mut self.scratch)?;
        let now = now_ms();
        let frame_len = 4 + stream.page_size as usize;
        for m in &marks {
            stream.txid += 1;
            self.builder
                .commit_at((m.len / frame_len) as u64, stream.txid, now, m.db_pages);
        }
        if !marks.is_empty() {
            let n = marks.len() as u64;
            self.update(|s| {
                s.transactions += n;
                s.pending += n;
                s.oldest_pending_ms.get_or_insert(now);
            });
        }
        Ok((!marks.is_empty(), stopped_at))
    }

    /// The `-wal` and its header, when there is one with a valid header.
    fn current_wal(&mut self) -> Result<Option<(Arc<File>, WalHeader)>> {
        let Some(wal) = self.wal_file()? else {
            return Ok(None);
        };
        let header = WalHeader::read(&wal).map_err(|e| Error::io("read", &self.wal_path, e))?;
        Ok(header.map(|h| (wal, h)))
    }

    /// One look at the `-wal`: reads what was committed since the last look (or takes a new base
    /// when a gap was found). Returns whether anything new was read.
    pub fn poll(&mut self) -> Result<bool> {
        if self.shipper.as_ref().is_some_and(Shipper::dead) {
            // Its queue stopped on an internal error (what it held is given up): a new queue,
            // and a new base for it.
            self.shipper = None;
            self.gap
                .get_or_insert_with(|| "the shipping stopped on an internal error".into());
        }
        let old = self
            .stream
            .as_ref()
            .zip(self.opts.base_every)
            .is_some_and(|(s, every)| s.txid > s.base_txid && s.started.elapsed() >= every);
        let base_waiting = self
            .shipper
            .as_ref()
            .is_some_and(|s| s.flags.bases.load(Ordering::SeqCst) > 0);
        if old && self.gap.is_none() && !self.pinned && !base_waiting {
            self.gap = Some(SCHEDULED.into());
        }
        if self
            .shipper
            .as_ref()
            .is_some_and(|s| s.flags.lost.swap(false, Ordering::SeqCst))
        {
            self.gap
                .get_or_insert_with(|| "the location could not take the segments in time".into());
        }
        if let Some(why) = self.gap.take() {
            if let Err(e) = self.resync(&why) {
                self.gap.get_or_insert(why);
                return Err(e);
            }
            // A base that waits for the previous one is not news.
            return Ok(self.stream.is_some());
        }
        let Some(cur) = self.cursor else {
            // No WAL generation was readable at the base. While the read transaction taken
            // then is held (it reads the database file alone, so no checkpoint can run and the
            // first generation cannot be restarted), the first one to appear follows the base.
            let path = self.wal_path.clone();
            let io = |e| Error::io("read", &path, e);
            let Some((wal, h)) = self.current_wal()? else {
                return Ok(false);
            };
            if !std::mem::take(&mut self.pinned) {
                self.gap = Some("a new -wal appeared".into());
                return Ok(false);
            }
            let mut cur = Cursor::start(&h);
            let read = self.read_frames(&wal, &mut cur, true);
            let len = wal.metadata().map(|m| m.len());
            self.end();
            let (any, _) = read.map_err(io)?;
            self.wal_len = len.map_err(io)?;
            self.cursor = Some(cur);
            return Ok(any);
        };
        self.follow(cur)
    }

    /// Reads what the current stream's WAL generation (or the next one, after a restart)
    /// committed since `cur`; a gap found is left in `self.gap` for the next poll.
    fn follow(&mut self, cur: Cursor) -> Result<bool> {
        let mut cur = cur;
        let path = self.wal_path.clone();
        let io = |e| Error::io("read", &path, e);
        let Some((wal, h)) = self.current_wal()? else {
            // Emptied (a TRUNCATE checkpoint) or removed (the last connection's close, which
            // the replicator's own open connection normally prevents): whatever was committed
            // past what was read is out of reach, and nothing proves that was nothing.
            self.gap = Some(if self.basing {
                "the -wal was emptied while a base was copied".into()
            } else {
                "the -wal was emptied or removed before it was read to its end".into()
            });
            return Ok(false);
        };
        let len = wal.metadata().map_err(io)?.len();
        if h.salt == cur.salt {
            if len < self.wal_len {
                self.gap = Some("the -wal was truncated".into());
                return Ok(false);
            }
            if !wal::may_have_more(&wal, &cur).map_err(io)? {
                return Ok(false);
            }
            // No lock: frames are proven by their checksum chain, and a restart while they
            // are read ends the chain early; the next poll sees it (see `restarted`).
            let (any, _) = self.read_frames(&wal, &mut cur, true).map_err(io)?;
            self.wal_len = wal.metadata().map_err(io)?.len();
            self.cursor = Some(cur);
            return Ok(any);
        }
        self.restarted(&wal, cur)
    }

    /// The WAL was restarted since the last look: takes the old generation's frames that are
    /// still in the file, then the new generation's, or records a gap.
    ///
    /// The new generation writes its frames from index 0 up, each frame header before its page;
    /// where it has not written, the old generation's frames are as that one left them, and the
    /// running checksum proves each one read. The old chain ends at a frame that is not its
    /// next one: if that frame now carries the new generation's salts, the new generation got
    /// there (old frames may be lost: a gap); otherwise the old generation ended there.
    fn restarted(&mut self, wal: &File, mut cur: Cursor) -> Result<bool> {
        let path = self.wal_path.clone();
        let io = |e| Error::io("read", &path, e);
        let outcome = (|| -> Result<std::result::Result<(bool, Cursor), String>> {
            let Some(h) = WalHeader::read(wal).map_err(io)? else {
                return Ok(Err("the -wal was emptied before it was read".into()));
            };
            if wal.metadata().map_err(io)?.len() < self.wal_len {
                return Ok(Err("the -wal was truncated before it was read".into()));
            }
            if h.salt[0] != cur.salt[0].wrapping_add(1) {
                return Ok(Err(format!(
                    "the WAL was restarted more than once between two reads (salt-1 {:#x} -> {:#x})",
                    cur.salt[0], h.salt[0]
                )));
            }
            let (old, stopped_at) = self.read_frames(wal, &mut cur, false).map_err(io)?;
            let end = wal::frame_salts(wal, &cur, stopped_at).map_err(io)?;
            let reached = end == Some(h.salt);
            let again = WalHeader::read(wal).map_err(io)?;
            if reached || again != Some(h) || wal.metadata().map_err(io)?.len() < self.wal_len {
                return Ok(Err(
                    "the WAL was restarted and overwritten before it was read".into()
                ));
            }
            // The old chain ended at the end of the file: either the old generation ended
            // there, or the file was emptied (a TRUNCATE checkpoint) and the new generation
            // grew back to that length, the old frames past what was read gone. Only a frame of
            // the old generation still standing after the new generation's proves the file was
            // not emptied.
            if end.is_none() {
                let mut probe = Cursor::start(&h);
                let mut sink = Vec::new();
                let (_, _, new_end) =
                    wal::read_committed(wal, &mut probe, u64::MAX, &mut sink, &mut self.scratch)
                        .map_err(io)?;
                // Frames of the new generation being written (not valid yet) are passed over.
                let mut i = new_end;
                let proven = loop {
                    match wal::frame_salts(wal, &probe, i).map_err(io)? {
                        Some(salt) if salt == h.salt => i += 1,
                        Some(salt) => break salt == cur.salt,
                        None => break false,
                    }
                };
                if !proven {
                    return Ok(Err(
                        "the -wal was emptied and written again before it was read".into()
                    ));
                }
            }
            let mut new = Cursor::start(&h);
            let (more, _) = self.read_frames(wal, &mut new, true).map_err(io)?;
            self.wal_len = wal.metadata().map_err(io)?.len();
            Ok(Ok((old || more, new)))
        })();
        match outcome? {
            Ok((any, new)) => {
                self.cursor = Some(new);
                Ok(any)
            }
            Err(why) => {
                self.gap = Some(why);
                Ok(false)
            }
        }
    }

    /// Starts a new stream after `why` (a gap, the first base, a scheduled one): what was read
    /// before goes out first (a true prefix), then a new base, then the stream's segments.
    ///
    /// The base is taken from a private copy of the database file, made without any lock while
    /// the WAL is followed as usual, with every frame of the current generation read from its
    /// start replayed onto it ([`Replicator::copied_base`]): the application's checkpoints and
    /// WAL restarts go on meanwhile, and the shipping pool backs the copy up. When that cannot
    /// be done (no WAL generation, no room for the copy, the last copy could not be backed up
    /// or was overtaken by a gap), the base is a backup of the database itself under the
    /// replicator's read transaction ([`Replicator::pinned_base`]), which keeps the WAL from
    /// restarting for as long as the backup reads.
    fn resync(&mut self, why: &str) -> Result<()> {
        if !self.builder.is_empty() {
            self.ship()?;
        }
        if self.stream.is_some() && why != SCHEDULED {
            self.update(|s| {
                s.gaps += 1;
                s.last_gap = Some(why.to_string());
            });
        }
        self.builder = segment::Builder::default();
        self.stream = None;
        self.cursor = None;
        if std::mem::take(&mut self.pinned) {
            self.end();
        }
        // One copied base at a time, and bases written in the order of their streams (one
        // written now would be named, and ordered, before one still being written): the new
        // base waits, and takes in whatever is committed meanwhile.
        if self.shipper().flags.bases.load(Ordering::SeqCst) > 0 {
            self.gap = Some(why.to_string());
            return Ok(());
        }
        let copy_failed = self.shipper().flags.copy_failed.swap(false, Ordering::SeqCst);
        // After a failed copy, the slow way until a base is written by it.
        self.slow_base |= copy_failed;
        if !self.slow_base && self.copied_base()? {
            return Ok(());
        }
        self.pinned_base()?;
        self.slow_base = false;
        Ok(())
    }

    /// Hands `shipment` to the shipper.
    fn send(&mut self, shipment: Shipment) -> Result<()> {
        self.shipper().send(shipment)
    }

    /// Starts a new stream whose base is a private copy of the database (see
    /// [`Replicator::resync`]). Returns false when the base must be taken the slow way now;
    /// true when it was handed to the shipper, or when a gap overtook the copy (the next poll
    /// takes the base the slow way).
    fn copied_base(&mut self) -> Result<bool> {
        self.wal = None;
        let Some((_, h)) = self.current_wal()? else {
            return Ok(false);
        };
        let dir = crate::fsutil::parent_dir(&self.source);
        let size = std::fs::metadata(&self.source)
            .map_err(|e| Error::io("stat", &self.source, e))?
            .len();
        // Room for the copy and what the WAL may add to it; without, the slow way needs none.
        if crate::fsutil::ensure_space(&dir, size + size / 4 + (64 << 20)).is_err() {
            return Ok(false);
        }
        let Ok(tmp) = crate::fsutil::temp_dir_in(&dir) else {
            return Ok(false);
        };
        let path = tmp.path().join("base.db");
        let id = self.next_stream;
        self.next_stream += 1;
        self.stream = Some(Stream {
            id,
            started: Instant::now(),
            next_seq: 0,
            txid: 0,
            base_txid: 0,
            page_size: h.page_size,
        });
        self.cursor = Some(Cursor::start(&h));
        self.wal_len = 0;
        self.basing = true;
        let copied = self.copy_into(&path, h.page_size);
        self.basing = false;
        if !matches!(copied, Ok(true)) {
            // Nothing of it is shipped: what it read is read again by the next base.
            self.let_go();
            // A gap came first: the next poll takes the base the slow way, which no restart can
            // overtake. Otherwise (the copy failed, or the application wrote more than may wait
            // meanwhile) the slow way now.
            if let Some(why) = self.gap.clone() {
                // No point between the last stream's end and the next base: a gap.
                self.update(|s| {
                    s.gaps += 1;
                    s.last_gap = Some(format!("{why} (while a base was copied)"));
                });
                self.slow_base = true;
                return Ok(true);
            }
            if let Err(e) = copied {
                self.update(|s| s.last_error = Some(format!("copying a base: {e}")));
            }
            return Ok(false);
        }
        if let Some(stream) = self.stream.as_mut() {
            stream.base_txid = stream.txid;
        }
        // The copy is the database as of the last transaction read: its name and times say so.
        let at_ms = self.builder.last().map_or_else(now_ms, |c| c.time_ms);
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let flags = self.shipper().flags.clone();
        flags.bases.fetch_add(1, Ordering::SeqCst);
        let sent = self.send(Shipment::Base {
            stream: id,
            base: NewBase::Copy {
                _dir: tmp,
                path,
                of: backup::CopyOf {
                    source: self.source.clone(),
                    at,
                },
            },
        });
        if sent.is_err() {
            flags.bases.fetch_sub(1, Ordering::SeqCst);
        }
        sent?;
        // Segment 0 holds every frame the copy was given: only its last transaction is a point
        // (the state of the base).
        self.prefix = !self.builder.is_empty();
        if self.prefix {
            self.ship()?;
        }
        Ok(true)
    }

    /// Copies the database file into `path` while following the WAL from the start of its
    /// current generation, then replays every frame read onto the copy: a page the
    /// application's checkpoints changed while it was copied (even torn) is one of those
    /// frames, and a page no frame holds has not changed since the generation began. So the
    /// copy is the database after the last transaction read. False when a gap or too many
    /// frames waiting ended it.
    fn copy_into(&mut self, path: &Path, page_size: u32) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        /// Bytes copied between two looks at the WAL.
        const CHUNK: u64 = 4 << 20;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // Never closed: closing a descriptor of the database would drop the replicator's
        // SQLite locks on it, and the application's last close would then checkpoint and
        // delete the -wal under it (frames not read yet lost).
        let src =
            crate::fsutil::kept_open(&self.source, false).map_err(|e| Error::io("open", &self.source, e))?;
        let meta = src.metadata().map_err(|e| Error::io("stat", &self.source, e))?;
        // The base's archive takes the copy's mode: the database's own.
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.permissions().mode() & 0o777)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        let len = meta.len();
        let mut done = 0u64;
        let mut rechecks = 0;
        loop {
            let Some(cur) = self.cursor else {
                return Ok(false);
            };
            self.follow(cur)?;
            if self.gap.is_some() || self.builder.bytes() >= self.opts.max_pending_bytes {
                return Ok(false);
            }
            if done >= len {
                // Every frame a checkpoint could have written into the file before the copy
                // ended must be read: the last read ended with its generation still the
                // current one (a restart during it is followed, or is a gap).
                if !self.generation_unchanged()? {
                    if rechecks >= 100 {
                        self.gap = Some("the WAL kept restarting while a base was copied".into());
                        return Ok(false);
                    }
                    rechecks += 1;
                    continue;
                }
                break;
            }
            let n = crate::fsutil::copy_range(&src, &out, done, (len - done).min(CHUNK))
                .map_err(|e| Error::io("copy", &self.source, e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        let ps = u64::from(page_size);
        let write = |e| Error::io("write", path, e);
        for frame in self.builder.frames().chunks_exact(4 + page_size as usize) {
            let pgno = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if pgno == 0 {
                return Ok(false);
            }
            out.write_all_at(&frame[4..], u64::from(pgno - 1) * ps)
                .map_err(write)?;
        }
        if let Some(c) = self.builder.last().filter(|c| c.db_pages > 0) {
            out.set_len(u64::from(c.db_pages) * ps).map_err(write)?;
        }
        Ok(true)
    }

    /// Whether the `-wal`'s header still names the generation the cursor reads (SQLite writes a
    /// new generation's header before any of its frames).
    fn generation_unchanged(&mut self) -> Result<bool> {
        let Some(cur) = self.cursor else {
            return Ok(false);
        };
        Ok(self.current_wal()?.is_some_and(|(_, h)| h.salt == cur.salt))
    }

    /// Takes a new base (a page-hash incremental of the last one, or a full backup) while the
    /// replicator's read transaction keeps the WAL from restarting, then reads the current
    /// generation of the WAL from its start: replayed on the base, its frames give the state
    /// after its last transaction exactly, whichever of them the base already held.
    fn pinned_base(&mut self) -> Result<()> {
        self.begin("BEGIN")?;
        let done = (|| -> Result<()> {
            let report = backup::backup(&self.ctx, &self.source, &self.base_options(), &NoProgress)?;
            let base = report
                .archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let page_size: u32 = self
                .conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(sql_err(&self.source, "read the page size of"))?;
            self.update(|s| {
                s.bases += 1;
                s.base = Some(base.clone());
            });
            let id = self.next_stream;
            self.next_stream += 1;
            self.send(Shipment::Base {
                stream: id,
                base: NewBase::Written(base),
            })?;
            self.stream = Some(Stream {
                started: Instant::now(),
                id,
                next_seq: 0,
                txid: 0,
                base_txid: 0,
                page_size,
            });
            let path = self.wal_path.clone();
            let io = |e| Error::io("read", &path, e);
            self.wal = None;
            let Some((wal, h)) = self.current_wal()? else {
                return Ok(());
            };
            let mut cur = Cursor::start(&h);
            self.read_frames(&wal, &mut cur, false).map_err(io)?;
            self.wal_len = wal.metadata().map_err(io)?.len();
            self.cursor = Some(cur);
            if let Some(stream) = self.stream.as_mut() {
                stream.base_txid = stream.txid;
            }
            Ok(())
        })();
        // Without a WAL generation to start from, the read transaction stays until one
        // appears (see `poll`).
        self.pinned = done.is_ok() && self.cursor.is_none() && self.stream.is_some();
        if !self.pinned {
            self.end();
        }
        done?;
        if self.builder.is_empty() {
            // Nothing to replay: the base is the state; the stream starts at segment 0 later.
            self.prefix = false;
        } else {
            self.prefix = true;
            self.ship()?;
        }
        Ok(())
    }

    /// Lets go of what was read and not shipped, and of the stream: nothing of it will be
    /// shipped (a new base takes it in).
    fn let_go(&mut self) {
        let n = self.builder.transactions();
        self.update(|s| {
            s.pending = s.pending.saturating_sub(n);
            if s.pending == 0 {
                s.oldest_pending_ms = None;
            }
        });
        self.builder = segment::Builder::default();
        self.stream = None;
        self.cursor = None;
    }

    /// Hands the transactions gathered to the shipper as the stream's next segment.
    pub fn ship(&mut self) -> Result<()> {
        self.last_ship = Instant::now();
        if self.builder.is_empty() || self.stream.is_none() {
            return Ok(());
        }
        // Memory stays bounded when the location (or a base being written) holds the shipper
        // up: past `max_pending_bytes` waiting, what was read is let go and a new base follows.
        let waiting = self.shipper().flags.waiting.load(Ordering::SeqCst);
        if waiting + self.builder.bytes() > self.opts.max_pending_bytes {
            self.let_go();
            self.gap = Some("the location could not take the segments in time".into());
            self.update(|s| {
                s.gaps += 1;
                s.last_gap = Some("the location could not take the segments in time".into());
            });
            return Ok(());
        }
        let builder = std::mem::take(&mut self.builder);
        let prefix = std::mem::take(&mut self.prefix);
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let sealed = Sealed {
            transactions: builder.transactions(),
            builder,
            stream: stream.id,
            seq: stream.next_seq,
            page_size: stream.page_size,
            prefix: prefix && stream.next_seq == 0,
        };
        stream.next_seq += 1;
        let bytes = sealed.builder.bytes();
        self.shipper().flags.waiting.fetch_add(bytes, Ordering::SeqCst);
        self.send(Shipment::Segment(sealed))
    }

    /// Waits until every sealed segment is written, for at most `deadline`; then the ones
    /// left are given up. Returns whether all were written.
    pub fn flush(&mut self, deadline: Duration) -> bool {
        let Some(shipper) = self.shipper.take() else {
            return true;
        };
        let started = Instant::now();
        while shipper.flags.busy() && started.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        shipper.flags.give_up.store(true, Ordering::SeqCst);
        shipper.wait_settled();
        let lost = shipper.flags.lost.load(Ordering::SeqCst);
        if lost {
            // Whatever follows needs a new base (the stream given up has a hole).
            self.gap
                .get_or_insert_with(|| "the location could not take the segments in time".into());
        }
        !lost
    }

    /// Waits until every base handed to the shipper is written (for at most `deadline`
    /// when given): a caller that must know the location takes them (the first base, before
    /// an application starts) fails here with the error that kept one from being written. A
    /// copied base that could not be backed up is taken again the old way, whose error is the
    /// one returned.
    pub fn wait_for_bases(&mut self, deadline: Option<Duration>) -> Result<()> {
        let started = Instant::now();
        loop {
            let Some(flags) = self.shipper.as_ref().map(|s| s.flags.clone()) else {
                return Ok(());
            };
            let thread_gone = self.shipper.as_ref().is_some_and(Shipper::dead);
            if flags.bases.load(Ordering::SeqCst) == 0 {
                // A base given up, or a copy overtaken by a gap: the next one is taken now.
                if !flags.copy_failed.load(Ordering::SeqCst) && self.gap.is_none() {
                    return Ok(());
                }
                self.poll()?;
                if deadline.is_some_and(|d| started.elapsed() > d) {
                    return Err(Error::io(
                        "write a base to",
                        &self.opts.to,
                        std::io::Error::other(format!("not written within {:?}", started.elapsed())),
                    ));
                }
                continue;
            }
            if thread_gone {
                return Err(Error::InvalidOption("the shipping thread stopped".into()));
            }
            let failed =
                |detail: String| Error::io("write a base to", &self.opts.to, std::io::Error::other(detail));
            if let Some(e) = self.status().last_error {
                return Err(failed(e));
            }
            if deadline.is_some_and(|d| started.elapsed() > d) {
                return Err(failed(format!("not written within {:?}", started.elapsed())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the gathered transactions should be shipped now.
    pub fn due(&self) -> bool {
        !self.builder.is_empty()
            && (self.last_ship.elapsed() >= self.opts.interval
                || self.builder.bytes() >= self.opts.max_segment_bytes)
    }

    /// Polls and ships until `stop` is set, then reads and ships what was committed last,
    /// waiting up to `final_deadline` for the location. `on_error` hears each error (the
    /// replicator goes on and tries again: a location that fails keeps the transactions
    /// waiting, up to [`ReplicateOptions::max_pending_bytes`]).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        final_deadline: Duration,
        on_error: &mut dyn FnMut(&str),
    ) -> Result<ReplicateStatus> {
        while !stop.load(Ordering::SeqCst) {
            let pause = self.tick(on_error);
            std::thread::sleep(pause);
        }
        self.finish(final_deadline)
    }

    /// One step of [`Replicator::run`]: a look at the WAL, and a shipment when one is due.
    /// Returns how long to wait before the next step: quick looks while the application
    /// writes, slower ones as it stays idle. A caller driving many replicators on one thread
    /// calls this for each in turn, each when its pause is over.
    pub fn tick(&mut self, on_error: &mut dyn FnMut(&str)) -> Duration {
        let mut pause = None;
        let busy = match self.poll() {
            Ok(busy) => busy,
            Err(e) => {
                on_error(&e.to_string());
                pause = Some(self.opts.interval.max(Duration::from_millis(500)));
                false
            }
        };
        if self.due() {
            if let Err(e) = self.ship() {
                on_error(&e.to_string());
            }
        }
        let last_error = self.status.lock().ok().and_then(|s| s.last_error.clone());
        if last_error.is_some() && last_error != self.said {
            on_error(last_error.as_deref().unwrap_or_default());
        }
        self.said = last_error;
        self.idle = if busy { 0 } else { self.idle.saturating_add(1) };
        // A burst's large read buffer is not kept through a quiet spell.
        if self.idle == 50 && self.scratch.capacity() > 256 << 10 {
            self.scratch = Vec::new();
        }
        // Quick looks while the application writes (a restarted WAL is read before the new
        // generation overwrites the old one), slower ones as it stays idle: 2 ms for the first
        // 50 quiet looks, 20 ms up to about a second, then 100 ms (an idle database costs a few
        // syscalls ten times a second; a restart missed meanwhile is a gap, recorded and
        // resynchronised, never a hole).
        pause.unwrap_or(Duration::from_millis(match self.idle {
            0..50 => 2,
            50..100 => 20,
            _ => 100,
        }))
    }

    /// The end of a run: reads and ships what was committed last, waiting up to
    /// `final_deadline` for the location; what it cannot take by then is given up (a gap the
    /// next run starts with).
    pub fn finish(&mut self, final_deadline: Duration) -> Result<ReplicateStatus> {
        let synced = self.sync();
        self.flush(final_deadline);
        synced?;
        Ok(self.status())
    }

    /// Reads what was committed up to now and hands it to the shipper.
    pub fn sync(&mut self) -> Result<()> {
        self.poll()?;
        // After a gap, a new base (which may wait for the previous one to be written first,
        // for at most 30 s) takes in what was committed.
        let started = Instant::now();
        while self.gap.is_some() && started.elapsed() < Duration::from_secs(30) {
            if self
                .shipper
                .as_ref()
                .is_some_and(|s| s.flags.bases.load(Ordering::SeqCst) > 0)
            {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            self.poll()?;
        }
        self.ship()
    }
}
