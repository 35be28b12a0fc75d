//! `merge`: import the rows of other backups (archives or SQL dumps) into an existing database,
//! without duplicates and without breaking links.
//!
//! Each source is first materialized and checked in a private temp file through the same safe
//! readers as `restore` (an archive is extracted and verified; a dump is loaded as untrusted SQL).
//! Then, in one `BEGIN IMMEDIATE` transaction on the target (waiting for other writers up to a
//! timeout), tables are merged parents-first by the target's foreign keys:
//!
//! - **identity** of a row, in order of preference: the columns the keys file names; a PRIMARY
//!   KEY that is not an integer rowid alias; the first UNIQUE constraint; else every common
//!   column except an integer rowid-alias key (after foreign keys are translated). A row whose
//!   identity is already in the target is a duplicate: skipped, and its id mapped to the
//!   target's row.
//! - **integer keys**: an inserted row keeps its id when that id is free in the target, else
//!   gets the next free one; every foreign key pointing at it (other tables and the same table)
//!   is rewritten through the id map. A foreign key whose parent is in neither database becomes
//!   NULL where the column allows it (an orphan), else the row is skipped and reported. Such a
//!   key (and one to a row not merged yet) matches a target row holding the same untranslated
//!   value or NULL, so a backup merged into its own source, or merged twice, adds nothing.
//! - **schema differences**: columns only in the incoming data are dropped with a warning,
//!   columns only in the target get their defaults, tables only in the incoming data are reported
//!   and skipped unless `create_missing_tables`.
//! - **derived data**: rows are inserted with ordinary INSERTs, so the target's triggers fire;
//!   afterwards every full-text table is checked and, if its index no longer matches its
//!   content, rebuilt. Virtual tables themselves are not merged row by row.
//! - `foreign_key_check` must not report more violations than before, or nothing is committed.
//!   `dry_run` does all of it and rolls back.
//!
//! Sources are read through their own read-only connections (no ATTACH); their quick_check
//! runs on a second thread while the merge transaction is built, and must pass before it
//! commits. Memory: the target's page cache (64 MiB at most), the id maps of integer keys
//! (16 bytes an id) and, for content identity, 24 bytes per row of the table being merged (a
//! 16-byte SHA-256 prefix of the row's identity values and its rowid); rows are streamed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::dump::Content;
use crate::ops::backup::{self, BackupOptions};
use crate::ops::Context;
use crate::progress::{NoProgress, Progress};
use crate::sqlite::db::{self, quote_ident, Check};
use crate::sqlite::findings::PROBLEM_LIMIT;

/// Row-hash maps: a fast hasher, seeded at random per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Old integer id → id in the target, for one table. Sources are read in rowid order, so ids
/// arrive ascending and are appended to a sorted array (16 bytes an id, no hashing); a lookup
/// tries the slot a dense run of ids puts it in, then binary search. An id out of order (not
/// expected) goes to a side map.
#[derive(Default)]
struct IdMap {
    ids: Vec<(i64, i64)>,
    unordered: FastMap<i64, i64>,
}

impl IdMap {
    fn with_capacity(n: usize) -> IdMap {
        IdMap {
            ids: Vec::with_capacity(n),
            unordered: FastMap::default(),
        }
    }

    fn insert(&mut self, old: i64, new: i64) {
        match self.ids.last() {
            Some(&(last, _)) if last >= old => {
                self.unordered.insert(old, new);
            }
            _ => self.ids.push((old, new)),
        }
    }

    fn get(&self, old: i64) -> Option<i64> {
        let first = self.ids.first()?.0;
        let guess = old.checked_sub(first).and_then(|d| usize::try_from(d).ok());
        if let Some(&(k, v)) = guess.and_then(|i| self.ids.get(i)) {
            if k == old {
                return Some(v);
            }
        }
        match self.ids.binary_search_by_key(&old, |&(k, _)| k) {
            Ok(i) => Some(self.ids[i].1),
            Err(_) => self.unordered.get(&old).copied(),
        }
    }
}

/// A coarse form of a key, for "might this row match one still in the batch?": equal under
/// any comparison SQLite's `IS` may make with a key column (NOCASE and RTRIM collations,
/// numeric affinity turning '1' into 1), and sometimes equal when the values are not (which
/// only costs an early write of the batch).
fn loose_key<'a>(values: impl Iterator<Item = ValueRef<'a>>) -> [u8; 16] {
    let mut h = Sha256::new();
    for v in values {
        let number = match v {
            ValueRef::Integer(i) => Some(i as f64),
            ValueRef::Real(f) => Some(f),
            ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok()),
            ValueRef::Null => None,
        };
        match (v, number) {
            (_, Some(f)) => {
                h.update(b"#");
                h.update(f.to_bits().to_be_bytes());
            }
            (ValueRef::Text(t) | ValueRef::Blob(t), None) => {
                let t = t.trim_ascii_end().to_ascii_lowercase();
                h.update(b"t");
                h.update((t.len() as u64).to_be_bytes());
                h.update(&t);
            }
            _ => h.update(b"n"),
        }
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Rows waiting to be inserted with one multi-row INSERT. One statement per batch instead of
/// per row matters beyond the statement overhead: an INSERT that fires a trigger runs in a
/// statement transaction, and FTS5 writes its pending index to disk at every one, so a
/// full-text index kept by triggers is written a segment per row when rows go one at a time.
/// Values are copied into one buffer (the source row they were read from is gone by the time
/// the batch is written).
struct Batch {
    columns: usize,
    /// Rows a full batch holds.
    capacity: usize,
    bytes: Vec<u8>,
    slots: Vec<Slot>,
    /// What the batch holds that the target does not show yet: integer ids, and the loose keys
    /// of key-identified rows (a row matching one is looked up after a flush).
    ids: HashSet<i64, foldhash::fast::RandomState>,
    keys: HashSet<[u8; 16], foldhash::fast::RandomState>,
}

#[derive(Clone, Copy)]
enum Slot {
    Null,
    Integer(i64),
    Real(f64),
    Text(usize, usize),
    Blob(usize, usize),
}

impl Batch {
    /// Rows per INSERT: at most 1,024, and at most 32,766 bound values (SQLite's limit).
    fn new(columns: usize) -> Batch {
        let columns = columns.max(1);
        let capacity = (32_766 / columns).clamp(1, 1024);
        Batch {
            columns,
            capacity,
            bytes: Vec::new(),
            slots: Vec::with_capacity(capacity * columns),
            ids: HashSet::default(),
            keys: HashSet::default(),
        }
    }

    fn rows(&self) -> usize {
        self.slots.len() / self.columns
    }

    /// True when the batch should be written before another row is added.
    fn full(&self) -> bool {
        self.rows() >= self.capacity || self.bytes.len() >= 4 << 20
    }

    fn push(&mut self, row: &[ValueRef<'_>]) {
        for v in row {
            let mut span = |b: &[u8]| {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(b);
                (at, b.len())
            };
            let slot = match *v {
                ValueRef::Null => Slot::Null,
                ValueRef::Integer(i) => Slot::Integer(i),
                ValueRef::Real(f) => Slot::Real(f),
                ValueRef::Text(t) => {
                    let (at, n) = span(t);
                    Slot::Text(at, n)
                }
                ValueRef::Blob(b) => {
                    let (at, n) = span(b);
                    Slot::Blob(at, n)
                }
            };
            self.slots.push(slot);
        }
    }

    /// Inserts the pending rows (`sql(n)` gives the INSERT for n rows) and empties the batch.
    fn flush(&mut self, conn: &Connection, sql: &dyn Fn(usize) -> String) -> rusqlite::Result<()> {
        let rows = self.rows();
        if rows == 0 {
            return Ok(());
        }
        let mut stmt = conn.prepare_cached(&sql(rows))?;
        let bytes = &self.bytes;
        stmt.execute(rusqlite::params_from_iter(self.slots.iter().map(|s| {
            ToSqlOutput::Borrowed(match *s {
                Slot::Null => ValueRef::Null,
                Slot::Integer(i) => ValueRef::Integer(i),
                Slot::Real(f) => ValueRef::Real(f),
                Slot::Text(at, n) => ValueRef::Text(&bytes[at..at + n]),
                Slot::Blob(at, n) => ValueRef::Blob(&bytes[at..at + n]),
            })
        })))?;
        self.bytes.clear();
        self.slots.clear();
        self.ids.clear();
        self.keys.clear();
        Ok(())
    }
}

/// Options of [`merge`].
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// Compute the full plan and report, change nothing.
    pub dry_run: bool,
    /// Row identity per table (see [`parse_keys`]).
    pub keys: HashMap<String, Vec<String>>,
    /// Create tables that exist only in the incoming data.
    pub create_missing_tables: bool,
    /// How long to wait for the target's write lock.
    pub busy_timeout: Duration,
    /// Where to materialize the sources (default: the target's directory).
    pub temp_dir: Option<PathBuf>,
    /// Write a safety archive of the target before changing it (kept only if the merge
    /// changed something).
    pub safety_copy: bool,
    /// Where the safety archive goes (default: the backup directory).
    pub safety_dir: Option<PathBuf>,
    /// Encrypt the safety archive (age); without it, it is stored in clear.
    pub encrypt: Option<crate::format::crypt::Encryption>,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            dry_run: false,
            keys: HashMap::new(),
            create_missing_tables: false,
            busy_timeout: Duration::from_secs(30),
            temp_dir: None,
            safety_copy: true,
            safety_dir: None,
            encrypt: None,
        }
    }
}

/// What merging did to one table (summed over the sources).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableMerge {
    /// The table.
    pub table: String,
    /// How rows were identified: "keys file", "primary key", "unique", "content".
    pub identity: String,
    /// Rows in the incoming data.
    pub incoming: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows skipped because their identity was already there.
    pub duplicates: u64,
    /// Inserted rows that got a new integer id.
    pub remapped: u64,
    /// Foreign keys set to NULL because their parent is in neither database.
    pub orphans: u64,
    /// Rows skipped because a NOT NULL foreign key has no parent.
    pub skipped_orphans: u64,
}

/// What [`merge`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeReport {
    /// The database merged into.
    pub target: PathBuf,
    /// The backups merged, in order.
    pub sources: Vec<PathBuf>,
    /// True when nothing was changed.
    pub dry_run: bool,
    /// Per table.
    pub tables: Vec<TableMerge>,
    /// Schema differences and other things worth knowing.
    pub warnings: Vec<String>,
    /// Checks of each source before it was read.
    pub checks: Vec<Check>,
    /// The archive of the target as it was just before the merge (None for a dry run, with
    /// `safety_copy` off, or when the merge changed nothing).
    pub safety_archive: Option<PathBuf>,
    /// Milliseconds the merge took, in all.
    pub duration_ms: u64,
    /// Of which: reading and checking the sources into private copies.
    pub sources_ms: u64,
    /// Of which: writing the safety archive of the target.
    pub safety_ms: u64,
    /// Of which: the merge transaction itself (lookups, inserts, the target's triggers).
    pub merge_ms: u64,
}

/// Parses a keys file: optional `[keys]` header, then one `table = ["col", ...]` per line;
/// `#` starts a comment.
///
/// ```
/// let k = litevault::ops::merge::parse_keys("[keys]\nusers = [\"email\"]  # natural key\n").unwrap();
/// assert_eq!(k["users"], vec!["email".to_string()]);
/// ```
pub fn parse_keys(text: &str) -> std::result::Result<HashMap<String, Vec<String>>, String> {
    let mut out = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line == "[keys]" {
            continue;
        }
        let (table, list) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected table = [\"column\", ...]", n + 1))?;
        let table = table.trim().trim_matches('"').to_string();
        let list = list.trim();
        let inner = list
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .ok_or_else(|| format!("line {}: expected a list in [ ]", n + 1))?;
        let cols: Vec<String> = inner
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if cols.is_empty() || table.is_empty() {
            return Err(format!("line {}: empty table or column list", n + 1));
        }
        out.insert(table, cols);
    }
    Ok(out)
}
/// Extracts or loads each source into `dir` (`source-N.sqlite`), checking its checksums (an
/// archive) or its load (a dump) before the target is touched; returns the copies.
fn materialize_sources(
    ctx: &Context,
    sources: &[PathBuf],
    dir: &Path,
    report: &mut MergeReport,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    let mut copies = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let copy = dir.join(format!("source-{i}.sqlite"));
        let (content, _) = crate::format::dump::read_any_manifest(src, ctx.identities())?;
        // Checksums and quick_check: what reading the source safely needs. (Its full-text
        // indexes are not read: virtual tables are not merged row by row.)
        let checks = match content {
            Content::Archive => {
                let contents = crate::ops::verify::extract(ctx, src, &copy, progress)?;
                contents.ensure_checksums(src)?;
                contents.checksum_checks()
            }
            _ => {
                let (_, content, mut reader) = crate::format::dump::open_with(src, true, ctx.identities())?;
                let loaded = crate::format::dump::load::load(src, content, &mut *reader, &copy, progress)?;
                report.warnings.extend(loaded.warnings);
                loaded.checks
            }
        };
        if let Some(err) = Error::from_failed_checks(src, &checks) {
            return Err(err);
        }
        report.checks.extend(checks);
        copies.push(copy);
    }

    Ok(copies)
}

/// Runs each source copy's storage check (quick_check) on a thread of its own; its results
/// decide whether the merge may commit.
fn check_sources_in_background(copies: Vec<PathBuf>) -> std::thread::JoinHandle<Vec<(usize, Check)>> {
    // The sources' quick_check runs on a second thread while the merge transaction is built;
    // nothing is committed unless it passes (a source SQLite finds corrupt while merging fails
    // the merge the same way).
    std::thread::spawn(move || -> Vec<(usize, Check)> {
        let mut out = Vec::new();
        for (i, copy) in copies.iter().enumerate() {
            // Storage only: the source's full-text indexes are never read (virtual tables
            // are not merged row by row). What it finds is classified as verify's checks are.
            let found = db::open_private(copy, false).and_then(|conn| {
                db::drop_vtab_modules(&conn)
                    .map(|()| db::integrity_findings(&conn, false, PROBLEM_LIMIT))
                    .map_err(|e| Error::sqlite("check", copy, e))
            });
            out.push((
                i,
                match found {
                    Ok(found) => Check::from_findings("quick_check", found),
                    Err(e) => Check::fail("quick_check", e.to_string()),
                },
            ));
        }
        out
    })
}

/// Merges the backups `sources` into the database `target`.
pub fn merge(
    ctx: &Context,
    sources: &[PathBuf],
    target: &Path,
    opts: &MergeOptions,
    progress: &dyn Progress,
) -> Result<MergeReport> {
    ctx.apply_priority();
    let started = Instant::now();
    db::check_header(target)?;
    let target = std::path::absolute(target).map_err(|e| Error::io("resolve", target, e))?;
    let base = opts
        .temp_dir
        .clone()
        .unwrap_or_else(|| crate::fsutil::parent_dir(&target));
    // Leftovers of killed runs go first (not in a dry run, which changes nothing).
    let mut swept = Vec::new();
    if !opts.dry_run {
        swept = crate::fsutil::sweep_leftovers(&crate::fsutil::parent_dir(&target));
        if base != crate::fsutil::parent_dir(&target) {
            swept.extend(crate::fsutil::sweep_leftovers(&base));
        }
    }
    let tmp = crate::fsutil::temp_dir_in(&base)?;
    let mut report = MergeReport {
        target: target.clone(),
        sources: sources.to_vec(),
        dry_run: opts.dry_run,
        tables: Vec::new(),
        warnings: if swept.is_empty() {
            Vec::new()
        } else {
            vec![crate::fsutil::leftovers_note(&swept)]
        },
        checks: Vec::new(),
        safety_archive: None,
        duration_ms: 0,
        sources_ms: 0,
        safety_ms: 0,
        merge_ms: 0,
    };
    // 1. Every source, materialized and checked before the target is touched; their storage
    // checks run on a second thread while the merge transaction is built.
    let copies = materialize_sources(ctx, sources, tmp.path(), &mut report, progress)?;
    let source_check = check_sources_in_background(copies.clone());

    report.sources_ms = started.elapsed().as_millis() as u64;
    let merge_started = Instant::now();
    // 2. One write transaction on the target.
    let conn = Connection::open_with_flags(
        &target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Error::sqlite("open", &target, e))?;
    let e = |err| Error::sqlite("merge into", &target, err);
    conn.busy_timeout(opts.busy_timeout).map_err(e)?;
    // A 64 MiB page cache: a large merge then writes each page once instead of spilling.
    conn.execute_batch("PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536")
        .map_err(e)?;
    // The write lock, tried every 100 µs up to the timeout: SQLite's own busy handler sleeps
    // for growing intervals and can miss every gap between a busy writer's commits.
    let begin = || -> Result<()> {
        let deadline = Instant::now() + opts.busy_timeout;
        conn.busy_timeout(Duration::ZERO).map_err(e)?;
        let result = loop {
            match conn.execute_batch("BEGIN IMMEDIATE") {
                Err(err)
                    if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(err) if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                    break Err(Error::InUse {
                        path: target.clone(),
                        detail: format!(
                            "another connection kept the write lock for more than {} s",
                            opts.busy_timeout.as_secs()
                        ),
                    });
                }
                other => break other.map_err(e),
            }
        };
        conn.busy_timeout(opts.busy_timeout).map_err(e)?;
        result?;
        conn.execute_batch("SAVEPOINT litevault_merge").map_err(e)
    };
    // The safety archive is written before the write lock is taken (other writers are not
    // held up by it); `data_version` then tells whether anyone committed in between, in which
    // case the lock is released and the archive taken again, so that it holds exactly what
    // the merge starts from.
    let mut safety: Option<PathBuf> = None;
    if opts.safety_copy && !opts.dry_run {
        const ATTEMPTS: u32 = 5;
        let version = || {
            conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                .map_err(e)
        };
        let take = || {
            backup::backup(
                ctx,
                &target,
                &BackupOptions {
                    destination: backup::Destination::Location {
                        dir: opts.safety_dir.clone(),
                        tag: Some("pre-merge".into()),
                    },
                    allow_corrupt: true,
                    encrypt: opts.encrypt.clone(),
                    ..Default::default()
                },
                &NoProgress,
            )
            .map(|r| r.archive)
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt == ATTEMPTS {
                // Writers kept committing: take it under the write lock (readers, the backup
                // among them, still run), which holds other writers off while it is written.
                begin()?;
                match take() {
                    Ok(archive) => {
                        safety = Some(archive);
                        break;
                    }
                    Err(err) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(err);
                    }
                }
            }
            let seen = version()?;
            let archive = take()?;
            let locked = begin().and_then(|()| version());
            if let Err(err) = locked {
                let _ = conn.execute_batch("ROLLBACK");
                let _ = std::fs::remove_file(&archive);
                return Err(err);
            }
            if locked.ok() == Some(seen) {
                safety = Some(archive);
                break;
            }
            let _ = conn.execute_batch("ROLLBACK");
            let _ = std::fs::remove_file(&archive);
        }
    } else {
        begin()?;
    }
    report.safety_ms = merge_started.elapsed().as_millis() as u64;
    let merge_started = Instant::now();
    // Whether the merge changed anything: rows (total_changes, triggers' included) or the
    // schema (a table created), which total_changes does not count.
    let schema_version = || conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0));
    let schema_before = schema_version().map_err(e)?;
    // A safety archive of a target that ends unchanged is not kept.
    let drop_safety = |safety: &mut Option<PathBuf>| {
        if let Some(p) = safety.take() {
            let _ = std::fs::remove_file(p);
        }
    };
    let has_triggers: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM main.sqlite_schema WHERE type = 'trigger'",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    let merge_all = |warnings: &mut Vec<String>| -> Result<Vec<TableMerge>> {
        let mut totals: Vec<TableMerge> = Vec::new();
        for copy in &copies {
            let src = db::open_private(copy, false)?;
            for t in merge_one(&conn, &src, opts, warnings).map_err(e)? {
                match totals.iter_mut().find(|x| x.table == t.table) {
                    Some(x) => {
                        x.incoming += t.incoming;
                        x.inserted += t.inserted;
                        x.duplicates += t.duplicates;
                        x.remapped += t.remapped;
                        x.orphans += t.orphans;
                        x.skipped_orphans += t.skipped_orphans;
                    }
                    None => totals.push(t),
                }
            }
        }
        refresh_fts(&conn, warnings).map_err(e)?;
        Ok(totals)
    };
    let result = (|| -> Result<(Vec<String>, Vec<TableMerge>)> {
        let mut warnings = Vec::new();
        let mut totals = merge_all(&mut warnings)?;
        // foreign_key_check may not report more than before. Only tables that got rows can
        // have new violations (all tables with foreign keys when the target has triggers,
        // which may write anywhere). The count before is only needed when one remains after:
        // then the merge is rolled back to count it, and done again.
        let mut checked: Vec<String> = user_tables(&conn, "main").map_err(e)?;
        if !has_triggers {
            checked.retain(|name| totals.iter().any(|t| t.table == *name && t.inserted > 0));
        }
        let fk_after = fk_violations(&conn, &checked).map_err(e)?;
        if fk_after > 0 {
            conn.execute_batch("ROLLBACK TO litevault_merge").map_err(e)?;
            let fk_before = fk_violations(&conn, &checked).map_err(e)?;
            if fk_after > fk_before {
                return Err(Error::VerificationFailed {
                    path: target.clone(),
                    failed: format!(
                        "foreign_key_check: {fk_after} violations after the merge, {fk_before} before; nothing was merged"
                    ),
                    class: None,
                });
            }
            warnings.clear();
            totals = merge_all(&mut warnings)?;
        }
        Ok((warnings, totals))
    })();
    // Joined on every path; a failed source check outranks whatever the merge reported.
    let checked = match source_check.join() {
        Ok(checks) => checks,
        Err(_) => vec![(0, Check::fail("quick_check", "the check thread panicked"))],
    };
    let result = match checked.iter().find(|(_, c)| c.failed()) {
        Some((i, c)) => Err(Error::VerificationFailed {
            path: sources[*i].clone(),
            failed: format!("{}: {}", c.name, c.detail),
            class: c.class,
        }),
        None => result.map(|(warnings, totals)| {
            report.checks.extend(checked.into_iter().map(|(_, c)| c));
            report.warnings.extend(warnings);
            report.tables = totals;
        }),
    };
    match result {
        Ok(()) if !opts.dry_run => {
            let changed = conn.total_changes() > 0 || schema_version().map_err(e)? != schema_before;
            if let Err(err) = conn.execute_batch("RELEASE litevault_merge; COMMIT") {
                // Whether a failed COMMIT left anything behind is not always known: the
                // safety archive stays.
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e(err));
            }
            if !changed {
                drop_safety(&mut safety);
            }
        }
        Ok(()) => conn.execute_batch("ROLLBACK").map_err(e)?,
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            drop_safety(&mut safety);
            return Err(err);
        }
    }
    report.safety_archive = safety;
    drop(conn);
    report.merge_ms = merge_started.elapsed().as_millis() as u64;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

struct TableInfo {
    name: String,
    /// Stored (non-generated) columns, by name.
    columns: Vec<String>,
    notnull: HashSet<String>,
    /// The integer rowid-alias column.
    int_pk: Option<String>,
    /// A declared primary key that is not an integer alias.
    pk: Vec<String>,
    /// Columns of the first UNIQUE constraint.
    unique: Option<Vec<String>>,
    /// (column, parent table, parent column or None for the parent's primary key)
    fks: Vec<(String, String, Option<String>)>,
    without_rowid: bool,
}

fn table_info(conn: &Connection, schema: &str, name: &str) -> rusqlite::Result<TableInfo> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name, type, \"notnull\", pk, hidden FROM {schema}.pragma_table_xinfo(?1) ORDER BY cid"
    ))?;
    let cols: Vec<(String, String, bool, i64, i64)> = stmt
        .query_map([name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let wr: bool = conn
        .query_row(
            &format!("SELECT wr FROM {schema}.pragma_table_list WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
        .unwrap_or(false);
    let mut pk: Vec<(i64, String, String)> = cols
        .iter()
        .filter(|c| c.3 > 0)
        .map(|c| (c.3, c.0.clone(), c.1.clone()))
        .collect();
    pk.sort();
    let int_pk = (!wr && pk.len() == 1 && pk[0].2.eq_ignore_ascii_case("INTEGER")).then(|| pk[0].1.clone());
    let pk_cols: Vec<String> = if int_pk.is_some() {
        Vec::new()
    } else {
        pk.iter().map(|p| p.1.clone()).collect()
    };
    let mut unique = None;
    let mut idx = conn.prepare(&format!(
        "SELECT name FROM {schema}.pragma_index_list(?1) WHERE \"unique\" = 1 AND origin = 'u' ORDER BY seq DESC"
    ))?;
    let names: Vec<String> = idx
        .query_map([name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some(first) = names.first() {
        let mut ic = conn.prepare(&format!(
            "SELECT name FROM {schema}.pragma_index_info(?1) ORDER BY seqno"
        ))?;
        let c: Vec<Option<String>> = ic
            .query_map([first], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if c.iter().all(Option::is_some) {
            unique = Some(c.into_iter().flatten().collect());
        }
    }
    let mut fk = conn.prepare(&format!(
        "SELECT \"from\", \"table\", \"to\" FROM {schema}.pragma_foreign_key_list(?1) ORDER BY id, seq"
    ))?;
    let fks = fk
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(TableInfo {
        name: name.to_string(),
        columns: cols.iter().filter(|c| c.4 == 0).map(|c| c.0.clone()).collect(),
        notnull: cols.iter().filter(|c| c.2).map(|c| c.0.clone()).collect(),
        int_pk,
        pk: pk_cols,
        unique,
        fks,
        without_rowid: wr,
    })
}

fn user_tables(conn: &Connection, schema: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name FROM {schema}.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
           AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'
           AND name NOT IN (SELECT name FROM {schema}.pragma_table_list WHERE type = 'shadow')
         ORDER BY name"
    ))?;
    let v = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(v)
}

/// Parents first (by the target's foreign keys), names otherwise.
fn parents_first(tables: &[TableInfo]) -> Vec<usize> {
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let parents: Vec<Vec<&str>> = tables
        .iter()
        .map(|t| t.fks.iter().map(|(_, parent, _)| parent.as_str()).collect())
        .collect();
    crate::model::sql::parents_first(&names, &parents)
}

/// The identity of a row: the first 16 bytes of the SHA-256 of its identity values (type-tagged,
/// length-prefixed). Equal hashes are taken as equal rows; SHA-256 makes a collision, even a
/// crafted one, out of reach.
fn hash_values<'a>(values: impl Iterator<Item = ValueRef<'a>>) -> [u8; 16] {
    let mut h = Sha256::new();
    for v in values {
        crate::sqlite::db::hash_value(&mut h, v);
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Merges the database open on `src` into the one open on `conn`.
fn merge_one(
    conn: &Connection,
    src: &Connection,
    opts: &MergeOptions,
    warnings: &mut Vec<String>,
) -> rusqlite::Result<Vec<TableMerge>> {
    let target_tables = user_tables(conn, "main")?;
    let incoming_tables = user_tables(src, "main")?;
    let lower_target: HashSet<String> = target_tables.iter().map(|t| t.to_ascii_lowercase()).collect();
    for t in &incoming_tables {
        if !lower_target.contains(&t.to_ascii_lowercase()) {
            if opts.create_missing_tables {
                let sql: String = src.query_row(
                    "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
                    [t],
                    |r| r.get(0),
                )?;
                conn.execute_batch(&sql)?;
                warnings.push(format!("table {t:?} only in the incoming data: created"));
            } else {
                warnings.push(format!(
                    "table {t:?} only in the incoming data: skipped (--create-missing-tables creates it)"
                ));
            }
        }
    }
    let target_tables = user_tables(conn, "main")?;
    let incoming_set: HashSet<String> = incoming_tables.iter().map(|t| t.to_ascii_lowercase()).collect();
    let infos: Vec<TableInfo> = target_tables
        .iter()
        .filter(|t| incoming_set.contains(&t.to_ascii_lowercase()))
        .map(|t| table_info(conn, "main", t))
        .collect::<rusqlite::Result<_>>()?;
    let mut id_maps: HashMap<String, IdMap> = HashMap::new();
    let mut out = Vec::new();
    // Tables still to merge: a foreign key into one of them (a cycle between tables) is
    // translated once that table is merged.
    let mut pending: HashSet<String> = infos.iter().map(|t| t.name.to_ascii_lowercase()).collect();
    let mut later: Vec<Deferred> = Vec::new();
    for i in parents_first(&infos) {
        let info = &infos[i];
        pending.remove(&info.name.to_ascii_lowercase());
        out.push(merge_table(
            conn,
            src,
            info,
            opts,
            &mut id_maps,
            &pending,
            &mut later,
            warnings,
        )?);
    }
    for d in later {
        let map = id_maps.get(&d.parent);
        let q = quote_ident(&d.table);
        let col = quote_ident(&d.column);
        match map.and_then(|m| m.get(d.old_ref)) {
            Some(n) => {
                conn.execute(
                    &format!("UPDATE main.{q} SET {col} = ?1 WHERE rowid = ?2"),
                    [n, d.rowid],
                )?;
            }
            None if !d.notnull => {
                conn.execute(
                    &format!("UPDATE main.{q} SET {col} = NULL WHERE rowid = ?1"),
                    [d.rowid],
                )?;
                if let Some(t) = out.iter_mut().find(|t| t.table == d.table) {
                    t.orphans += 1;
                }
            }
            None => {}
        }
    }
    Ok(out)
}

/// A foreign key to translate after its parent table is merged.
struct Deferred {
    table: String,
    rowid: i64,
    column: String,
    notnull: bool,
    parent: String,
    old_ref: i64,
}

/// The columns a table's merge reads, and how its rows are identified.
struct Columns {
    /// The columns both databases have, in the target's order.
    common: Vec<String>,
    /// What identifies a row: "keys file", "primary key", "unique" or "content".
    identity: &'static str,
    /// Positions in `common` of the identity columns.
    id_pos: Vec<usize>,
    /// Position in `common` of the integer primary key, if any.
    pk_pos: Option<usize>,
}

/// The columns of target table `t` that the incoming table `src` also has (a warning names
/// those the target lacks), and the identity of its rows: the keys file's columns, else the
/// primary key, else a unique index, else the whole content.
fn columns(t: &TableInfo, src: &TableInfo, opts: &MergeOptions, warnings: &mut Vec<String>) -> Columns {
    let lower = |s: &str| s.to_ascii_lowercase();
    let src_cols: HashSet<String> = src.columns.iter().map(|c| lower(c)).collect();
    let common: Vec<String> = t
        .columns
        .iter()
        .filter(|c| src_cols.contains(&lower(c)))
        .cloned()
        .collect();
    let tgt_cols: HashSet<String> = t.columns.iter().map(|c| lower(c)).collect();
    let dropped: Vec<&String> = src
        .columns
        .iter()
        .filter(|c| !tgt_cols.contains(&lower(c)))
        .collect();
    if !dropped.is_empty() {
        warnings.push(format!(
            "{}: incoming columns not in the target were dropped: {}",
            t.name,
            dropped.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let (identity_cols, identity): (Vec<String>, &str) = if let Some(k) = opts.keys.get(&t.name) {
        (k.clone(), "keys file")
    } else if !t.pk.is_empty() && t.pk.iter().all(|c| src_cols.contains(&lower(c))) {
        (t.pk.clone(), "primary key")
    } else if let Some(u) = t
        .unique
        .as_ref()
        .filter(|u| u.iter().all(|c| src_cols.contains(&lower(c))))
    {
        (u.clone(), "unique")
    } else {
        (
            common
                .iter()
                .filter(|c| Some(*c) != t.int_pk.as_ref())
                .cloned()
                .collect(),
            "content",
        )
    };
    for c in &identity_cols {
        if !common.iter().any(|x| lower(x) == lower(c)) {
            warnings.push(format!(
                "{}: identity column {c:?} is not in both databases",
                t.name
            ));
        }
    }
    let pos = |c: &str| common.iter().position(|x| lower(x) == lower(c));
    let id_pos: Vec<usize> = identity_cols.iter().filter_map(|c| pos(c)).collect();
    let pk_pos = t.int_pk.as_deref().and_then(pos);
    Columns {
        common,
        identity,
        id_pos,
        pk_pos,
    }
}

#[allow(clippy::too_many_arguments)]
fn merge_table(
    conn: &Connection,
    src_conn: &Connection,
    t: &TableInfo,
    opts: &MergeOptions,
    id_maps: &mut HashMap<String, IdMap>,
    pending: &HashSet<String>,
    later: &mut Vec<Deferred>,
    warnings: &mut Vec<String>,
) -> rusqlite::Result<TableMerge> {
    let src = table_info(src_conn, "main", &t.name)?;
    let Columns {
        common,
        identity,
        id_pos,
        pk_pos,
    } = columns(t, &src, opts, warnings);
    let lower = |s: &str| s.to_ascii_lowercase();
    let pos = |c: &str| common.iter().position(|x| lower(x) == lower(c));
    let qt = quote_ident(&t.name);
    let col_list = common
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");

    // Identities already in the target. A key (primary, unique, keys file) is looked up through
    // SQL (its index); content identity through a map from the hash of each target row's
    // identity values to its rowid (24 bytes a row, built by one scan).
    let by_sql = identity != "content";
    let incoming: i64 = src_conn.query_row(&format!("SELECT count(*) FROM main.{qt}"), [], |r| r.get(0))?;
    let incoming = usize::try_from(incoming).unwrap_or(0);
    let mut existing: FastMap<[u8; 16], i64> = FastMap::default();
    if !by_sql {
        existing.reserve(incoming);
        let mut stmt = conn.prepare(&format!("SELECT rowid, {col_list} FROM main.{qt}"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let h = hash_values(
                id_pos
                    .iter()
                    .map(|&p| r.get_ref(p + 1))
                    .collect::<rusqlite::Result<Vec<_>>>()?
                    .into_iter(),
            );
            existing.entry(h).or_insert(r.get(0)?);
        }
    }
    // Finds a row with the same key; yields its integer key (or 1 when there is none).
    let mut lookup = if by_sql {
        let conds: Vec<String> = id_pos
            .iter()
            .enumerate()
            .map(|(i, &p)| format!("{} IS ?{}", quote_ident(&common[p]), i + 1))
            .collect();
        Some(conn.prepare(&format!(
            "SELECT {} FROM main.{qt} WHERE {} LIMIT 1",
            t.int_pk.as_deref().map(quote_ident).unwrap_or_else(|| "1".into()),
            if conds.is_empty() {
                "0".to_string()
            } else {
                conds.join(" AND ")
            }
        ))?)
    } else {
        None
    };
    // The largest integer key in the table so far: an id above it is free without a lookup.
    let mut next_id: i64 = match &t.int_pk {
        Some(pk) => conn.query_row(
            &format!("SELECT coalesce(max({}), 0) FROM main.{qt}", quote_ident(pk)),
            [],
            |r| r.get(0),
        )?,
        None => 0,
    };
    let mut report = TableMerge {
        table: t.name.clone(),
        identity: identity.into(),
        ..Default::default()
    };
    let mut map = IdMap::with_capacity(if t.int_pk.is_some() { incoming } else { 0 });
    // Foreign keys to translate: (position, parent, is the parent this table).
    let fk_pos: Vec<(usize, String, bool)> = t
        .fks
        .iter()
        .filter_map(|(from, parent, to)| {
            let p = pos(from)?;
            let parent_info_pk_match =
                to.is_none() || to.as_deref().map(lower) == id_maps_key_col(conn, parent);
            parent_info_pk_match.then(|| (p, lower(parent), lower(parent) == lower(&t.name)))
        })
        .collect();
    let mut deferred: Vec<(i64, usize, i64)> = Vec::new();
    let row_marks = format!("({})", vec!["?"; common.len()].join(", "));
    let insert_sql = |rows: usize| {
        format!(
            "INSERT INTO main.{qt}({col_list}) VALUES {}",
            vec![row_marks.as_str(); rows].join(", ")
        )
    };
    // Rows go one INSERT each, except into a table with triggers: there a single-row INSERT
    // runs in a statement transaction anyway (and FTS5 flushes at each), so rows are batched.
    // (Without triggers, a multi-row INSERT would add that statement journal instead.)
    let batched: bool = conn.query_row(
        "SELECT count(*) > 0 FROM main.sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE",
        [&t.name],
        |r| r.get(0),
    )?;
    let mut batch = Batch::new(common.len());
    let mut insert = conn.prepare(&insert_sql(1))?;
    let mut exists = match &t.int_pk {
        Some(pk) => Some(conn.prepare(&format!("SELECT 1 FROM main.{qt} WHERE {} = ?1", quote_ident(pk)))?),
        None => None,
    };
    let order = if src.without_rowid { "" } else { " ORDER BY rowid" };
    let mut stmt = src_conn.prepare(&format!("SELECT {col_list} FROM main.{qt}{order}"))?;
    let mut rows = stmt.query([])?;
    // Values are borrowed from the source row (no copies); only keys are rewritten.
    'rows: while let Some(r) = rows.next()? {
        fn bind<'v>(v: &ValueRef<'v>) -> ToSqlOutput<'v> {
            ToSqlOutput::Borrowed(*v)
        }
        report.incoming += 1;
        let mut vals: Vec<ValueRef<'_>> = (0..common.len())
            .map(|i| r.get_ref(i))
            .collect::<rusqlite::Result<_>>()?;
        let old_id = pk_pos.and_then(|p| match vals[p] {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        });
        let mut self_refs = Vec::new();
        let mut cycle_refs: Vec<(usize, String, i64)> = Vec::new();
        // Keys whose value in the target is not known at the lookup: orphans (the parent is
        // in neither database) and references to rows not merged yet (later in this table, or
        // in a table still to come). A target row matches with the untranslated value (the
        // source's own row, merged into its own database) or with NULL (a previous merge of
        // the same row, which nulled an orphan).
        let mut unresolved: Vec<(usize, i64)> = Vec::new();
        let mut orphaned: Vec<usize> = Vec::new();
        for (p, parent, is_self) in &fk_pos {
            let ValueRef::Integer(v) = vals[*p] else { continue };
            if *is_self {
                match map.get(v) {
                    Some(n) => vals[*p] = ValueRef::Integer(n),
                    None => {
                        self_refs.push((*p, v));
                        unresolved.push((*p, v));
                    }
                }
                continue;
            }
            if pending.contains(parent) {
                cycle_refs.push((*p, parent.clone(), v));
                unresolved.push((*p, v));
                continue;
            }
            let Some(pmap) = id_maps.get(parent) else { continue };
            match pmap.get(v) {
                Some(n) => vals[*p] = ValueRef::Integer(n),
                None => {
                    orphaned.push(*p);
                    unresolved.push((*p, v));
                }
            }
        }
        // The identity's unresolved keys and whether each may be NULL in the target.
        let open: Vec<(usize, i64, bool)> = unresolved
            .iter()
            .filter(|(p, _)| id_pos.contains(p))
            .map(|&(p, v)| (p, v, !t.notnull.contains(&common[p])))
            .collect();
        let nullable: Vec<usize> = (0..open.len()).filter(|&i| open[i].2).collect();
        // Every mix of untranslated and NULL values, the untranslated first; past 8 nullable
        // keys in one identity (2^8 lookups), only all-untranslated and all-NULL.
        let mixes: u32 = if nullable.len() <= 8 {
            1 << nullable.len()
        } else {
            2
        };
        // Some(key of the matching target row) when this row is already there. The row's
        // hash (content identity) or loose key (key identity) as first looked up; they are
        // those of the values inserted unless a key was unresolved.
        let mut there: Option<Option<i64>> = None;
        let (mut h, mut loose) = ([0u8; 16], [0u8; 16]);
        for mix in 0..mixes {
            for (j, &i) in nullable.iter().enumerate() {
                let null = if nullable.len() <= 8 {
                    (mix >> j) & 1 == 1
                } else {
                    mix == 1
                };
                vals[open[i].0] = if null {
                    ValueRef::Null
                } else {
                    ValueRef::Integer(open[i].1)
                };
            }
            there = match lookup.as_mut() {
                Some(stmt) => {
                    loose = loose_key(id_pos.iter().map(|&p| vals[p]));
                    if batch.keys.contains(&loose) {
                        batch.flush(conn, &insert_sql)?;
                    }
                    let mut found =
                        stmt.query(rusqlite::params_from_iter(id_pos.iter().map(|&p| bind(&vals[p]))))?;
                    found.next()?.map(|row| row.get::<_, i64>(0).ok())
                }
                None => {
                    h = hash_values(id_pos.iter().map(|&p| vals[p]));
                    existing.get(&h).map(|&rowid| Some(rowid))
                }
            };
            if there.is_some() {
                break;
            }
        }
        if let Some(there) = there {
            report.duplicates += 1;
            if let (Some(old), Some(n)) = (old_id, there) {
                map.insert(old, n);
            }
            continue 'rows;
        }
        // Not there: the values to insert. An orphan becomes NULL where its column allows it,
        // else the row is skipped; references to rows not merged yet keep their old value
        // until those rows are merged.
        for &(p, v) in &unresolved {
            vals[p] = ValueRef::Integer(v);
        }
        if orphaned.iter().any(|p| t.notnull.contains(&common[*p])) {
            report.skipped_orphans += 1;
            continue 'rows;
        }
        for &p in &orphaned {
            vals[p] = ValueRef::Null;
            report.orphans += 1;
        }
        if !open.is_empty() {
            if by_sql {
                loose = loose_key(id_pos.iter().map(|&p| vals[p]));
            } else {
                h = hash_values(id_pos.iter().map(|&p| vals[p]));
            }
        }
        if let (Some(old), Some(p), Some(ex)) = (old_id, pk_pos, exists.as_mut()) {
            let taken = old <= next_id && (batch.ids.contains(&old) || ex.exists([old])?);
            let new = if taken {
                next_id += 1;
                report.remapped += 1;
                next_id
            } else {
                next_id = next_id.max(old);
                old
            };
            vals[p] = ValueRef::Integer(new);
            map.insert(old, new);
        }
        let rowid = if batched {
            if batch.full() {
                batch.flush(conn, &insert_sql)?;
            }
            batch.push(&vals);
            // The row's rowid: its integer key when it has one; else known only once
            // written, which only a reference to fix later needs.
            let rowid = match (pk_pos, t.int_pk.is_some()) {
                (Some(p), true) => match vals[p] {
                    ValueRef::Integer(i) => i,
                    _ => 0,
                },
                _ if !cycle_refs.is_empty() => {
                    batch.flush(conn, &insert_sql)?;
                    conn.last_insert_rowid()
                }
                _ => 0,
            };
            if t.int_pk.is_some() {
                batch.ids.insert(rowid);
            }
            if by_sql {
                batch.keys.insert(loose);
            }
            rowid
        } else {
            insert.execute(rusqlite::params_from_iter(vals.iter().map(bind)))?;
            conn.last_insert_rowid()
        };
        for (p, old_ref) in self_refs {
            deferred.push((rowid, p, old_ref));
        }
        for (p, parent, old_ref) in cycle_refs {
            later.push(Deferred {
                table: t.name.clone(),
                rowid,
                column: common[p].clone(),
                notnull: t.notnull.contains(&common[p]),
                parent,
                old_ref,
            });
        }
        if !by_sql {
            existing.entry(h).or_insert(rowid);
        }
        report.inserted += 1;
    }
    batch.flush(conn, &insert_sql)?;
    // Self-references to rows inserted later in the same table.
    for (rowid, p, old_ref) in deferred {
        let col = quote_ident(&common[p]);
        match map.get(old_ref) {
            Some(n) => {
                conn.execute(
                    &format!("UPDATE main.{qt} SET {col} = ?1 WHERE rowid = ?2"),
                    [n, rowid],
                )?;
            }
            None if !t.notnull.contains(&common[p]) => {
                conn.execute(
                    &format!("UPDATE main.{qt} SET {col} = NULL WHERE rowid = ?1"),
                    [rowid],
                )?;
                report.orphans += 1;
            }
            None => {}
        }
    }
    if t.int_pk.is_some() {
        id_maps.insert(lower(&t.name), map);
    }
    Ok(report)
}

/// The lowercased integer-key column of `table` in the target, if it has one.
fn id_maps_key_col(conn: &Connection, table: &str) -> Option<String> {
    table_info(conn, "main", table)
        .ok()
        .and_then(|t| t.int_pk)
        .map(|c| c.to_ascii_lowercase())
}

/// Rows `PRAGMA foreign_key_check` reports for `tables`.
fn fk_violations(conn: &Connection, tables: &[String]) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare("SELECT count(*) FROM main.pragma_foreign_key_check(?1)")?;
    let mut n = 0;
    for t in tables {
        n += stmt.query_row([t], |r| r.get::<_, i64>(0))? as u64;
    }
    Ok(n)
}

/// External-content full-text tables whose index no longer matches their content table (rows
/// were inserted without a trigger keeping the index in step) are rebuilt. The test is cheap:
/// the index's document count against the content table's row count.
fn refresh_fts(conn: &Connection, warnings: &mut Vec<String>) -> rusqlite::Result<()> {
    for (table, _module) in db::fts_tables(conn)? {
        let sql: String = conn.query_row(
            "SELECT sql FROM main.sqlite_schema WHERE name = ?1",
            [&table],
            |r| r.get(0),
        )?;
        let lower = sql.to_ascii_lowercase().replace(' ', "");
        let Some(at) = lower.find("content=") else {
            continue;
        };
        let rest = &lower[at + "content=".len()..];
        let content: String = rest
            .trim_start_matches(['\'', '"'])
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if content.is_empty() {
            continue;
        }
        let q = quote_ident(&table);
        // Both FTS5 and FTS4 keep one _docsize row per indexed document.
        let docsize = format!("{table}_docsize");
        let indexed: Option<i64> = conn
            .query_row(
                &format!("SELECT count(*) FROM main.{}", quote_ident(&docsize)),
                [],
                |r| r.get(0),
            )
            .ok();
        let rows: Option<i64> = conn
            .query_row(
                &format!("SELECT count(*) FROM main.{}", quote_ident(&content)),
                [],
                |r| r.get(0),
            )
            .ok();
        if let (Some(indexed), Some(rows)) = (indexed, rows) {
            if indexed != rows {
                conn.execute_batch(&format!("INSERT INTO main.{q}({q}) VALUES('rebuild')"))?;
                warnings.push(format!(
                    "full-text table {table:?} indexed {indexed} of {rows} rows of {content:?} after the merge: rebuilt"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn id_map_finds_dense_sparse_and_out_of_order_ids() {
        let mut m = IdMap::default();
        assert_eq!(m.get(1), None);
        for old in 1..=100 {
            m.insert(old, old + 1000);
        }
        for old in [150, 400, 1_000_000, i64::MAX] {
            m.insert(old, -old);
        }
        m.insert(-5, 7); // out of order
        m.insert(50, 0); // already there: the side map answers only for ids not in the array
        assert_eq!(m.get(1), Some(1001));
        assert_eq!(m.get(100), Some(1100));
        assert_eq!(m.get(50), Some(1050));
        assert_eq!(m.get(150), Some(-150));
        assert_eq!(m.get(1_000_000), Some(-1_000_000));
        assert_eq!(m.get(i64::MAX), Some(-i64::MAX));
        assert_eq!(m.get(-5), Some(7));
        assert_eq!(m.get(101), None);
        assert_eq!(m.get(i64::MIN), None);
        assert_eq!(m.get(0), None);
    }
}
