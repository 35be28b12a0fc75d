//! `verify`: prove an archive, or a database file, intact — check by check.
//!
//! An archive is streamed once: its structure and checksums are checked while the database is
//! extracted into a private temp directory, then the extracted database is checked against the
//! manifest (header state, row counts) and by SQLite (`integrity_check` or `quick_check`,
//! `foreign_key_check`, FTS integrity). A database file is checked in place, read-only, inside
//! one read transaction. Problems found are failed checks in the report, not errors: an error
//! means verification itself could not run. A failed integrity check says what kind of problem
//! it found, in which objects, and what to do ([`crate::sqlite::findings`]). With `reindex`, indexes are
//! rebuilt in the private copy (a database file is then copied first, with a snapshot)
//! and the copy is checked: proof that `restore --reindex` would give the data back. Nothing
//! here ever writes to a user's database.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorClass, Result};
use crate::format::archive::{self, ArchiveContents};
use crate::format::manifest::Manifest;
use crate::fsutil::WritebackFile;
use crate::ops::Context;
use crate::progress::Progress;
use crate::sqlite::db::Reindex;
use crate::sqlite::db::{self, Check, CheckOptions, DbInfo};
use crate::sqlite::findings::{Finding, Findings, ProblemClass, PROBLEM_LIMIT};

/// Options of [`verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Run `quick_check` (O(N)) instead of `integrity_check` (O(N log N)).
    pub quick: bool,
    /// Where to extract an archive's database, or copy a database file for `reindex`
    /// (default: the system temp directory).
    pub temp_dir: Option<PathBuf>,
    /// Rebuild indexes in the private copy before (or, for the disputed ones, between) the
    /// checks; a database file is then checked in a consistent temp copy, never in place.
    pub reindex: Reindex,
}

/// What was verified and how each check went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The file verified.
    pub path: PathBuf,
    /// "archive" or "database".
    pub kind: String,
    /// True when no check failed.
    pub ok: bool,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// The archive's manifest, when there is one and it could be read.
    pub manifest: Option<Manifest>,
    /// The indexes rebuilt in the checked copy (`reindex`), in name order.
    pub reindexed: Vec<String>,
    /// Milliseconds verification took.
    pub duration_ms: u64,
}

/// Verifies an archive or a database file, chosen by the file's first bytes.
///
/// ```no_run
/// let report = litevault::verify(&litevault::Context::new(), "app-20261121T101500Z.tar.zst".as_ref(), &Default::default(), &litevault::NoProgress)?;
/// for check in &report.checks {
///     println!("{:?} {}: {}", check.status, check.name, check.detail);
/// }
/// # Ok::<(), litevault::Error>(())
/// ```
pub fn verify(
    ctx: &Context,
    path: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    ctx.apply_priority();
    let started = Instant::now();
    if opts.quick && opts.reindex == Reindex::Disputed {
        return Err(Error::InvalidOption(QUICK_DISPUTED.into()));
    }
    let mut head = Vec::with_capacity(512);
    crate::location::open_read(path, true)?
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| Error::io("read", path, e))?;
    if crate::location::is_remote(path) && head.starts_with(db::SQLITE_MAGIC) {
        return Err(Error::InvalidOption(format!(
            "{} is an SQLite database in a bucket: verify checks databases on this machine only",
            path.display()
        )));
    }
    let mut report = if head.starts_with(db::SQLITE_MAGIC) && opts.reindex != Reindex::No {
        verify_database_copy(path, opts, progress)?
    } else if head.starts_with(db::SQLITE_MAGIC) {
        verify_database(path, opts)?
    } else if crate::format::crypt::is_encrypted(&head) {
        // Encrypted: a missing or wrong key is said as such (exit 1), damage is exit 3.
        match crate::format::dump::open(path, ctx.identities())?.1 {
            crate::format::dump::Content::Archive => verify_archive(ctx, path, opts, progress)?,
            _ => verify_dump(ctx, path, opts, progress)?,
        }
    } else if head.is_empty() {
        return Err(Error::NotADatabase {
            path: path.to_path_buf(),
            reason: "the file is empty (0 bytes): neither a database with content nor a backup".into(),
        });
    } else if let Ok((_, content, mut reader)) = crate::format::dump::open(path, ctx.identities()) {
        match content {
            crate::format::dump::Content::Archive => verify_archive(ctx, path, opts, progress)?,
            crate::format::dump::Content::ForeignDump
                if !crate::format::dump::begins_with_sql_statement(&mut reader) =>
            {
                return Err(Error::InvalidOption(format!(
                    "{}: not a backup: neither an SQLite database, a litevault archive nor an SQL dump \
                     (it starts with text that is not SQL); give verify a database, an archive or a dump",
                    path.display()
                )))
            }
            _ => verify_dump(ctx, path, opts, progress)?,
        }
    } else if archive::sniff(&head).is_some() {
        verify_archive(ctx, path, opts, progress)?
    } else {
        // Let the header check name what the file is (empty, WAL file, ...).
        db::check_header(path)?;
        return Err(Error::bad_archive(
            path,
            "neither an SQLite database nor a litevault archive",
        ));
    };
    report.ok = !report.checks.iter().any(Check::failed);
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

fn verify_database(path: &Path, opts: &VerifyOptions) -> Result<VerifyReport> {
    let conn = db::open_source(path)?;
    let mut checks = vec![Check::pass("header", "valid SQLite header")];
    conn.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(|e| Error::sqlite("begin read transaction on", path, e))?;
    checks.extend(db::run_checks(
        &conn,
        CheckOptions {
            quick: opts.quick,
            writable: false,
            expected_fk_violations: None,
        },
    ));
    let _ = conn.execute_batch("COMMIT");
    Ok(VerifyReport {
        path: path.to_path_buf(),
        kind: "database".into(),
        ok: false,
        checks,
        manifest: None,
        reindexed: Vec::new(),
        duration_ms: 0,
    })
}

/// `--quick` finds no index that disagrees with its table, so there would be none to rebuild.
pub(crate) const QUICK_DISPUTED: &str =
    "--reindex rebuilds the indexes that integrity_check disputes, which --quick does not check; \
     with --quick use --reindex all";

/// A database file with `reindex`: a consistent snapshot into a private temp file (the
/// database itself is only read), whose indexes are rebuilt there before it is checked.
fn verify_database_copy(path: &Path, opts: &VerifyOptions, progress: &dyn Progress) -> Result<VerifyReport> {
    let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    crate::fsutil::sweep_leftovers(&base);
    crate::fsutil::ensure_space(&base, db::precheck(path)?)?;
    let snapshot = crate::sqlite::snapshot::take(
        path,
        &base,
        crate::sqlite::snapshot::Method::Pages,
        crate::sqlite::snapshot::SnapshotLimits::default(),
        progress,
    )?;
    let copy = snapshot.path();
    let mut checks = vec![
        Check::pass("header", "valid SQLite header"),
        Check::pass(
            "snapshot",
            "checked in a consistent copy in a private temp file (--reindex changes only the copy)",
        ),
    ];
    let (rest, reindexed) =
        checks_with_reindex(copy, opts.reindex, &mut |_| match db::open_private(copy, true) {
            Ok(conn) => db::run_checks(
                &conn,
                CheckOptions {
                    quick: opts.quick,
                    writable: true,
                    expected_fk_violations: None,
                },
            ),
            Err(e) => vec![Check::fail("open database", e.to_string())],
        });
    checks.extend(rest);
    Ok(VerifyReport {
        path: path.to_path_buf(),
        kind: "database".into(),
        ok: false,
        checks,
        manifest: None,
        reindexed,
        duration_ms: 0,
    })
}

/// Checks a private copy (an extracted archive, a snapshot of a database file) after rebuilding
/// indexes in it as `reindex` asks, with `run(rebuilt)` running the checks:
///
/// - [`Reindex::All`]: every index is rebuilt, then the checks run;
/// - [`Reindex::Disputed`]: the checks run; when they find indexes that disagree with their
///   tables ([`ProblemClass::Index`]) and no storage damage (which rebuilding cannot repair,
///   and which may be why an index looks wrong), those indexes are rebuilt (every index when
///   the check stopped at its limit, as more may be disputed) and the checks run again;
/// - [`Reindex::No`]: the checks run.
///
/// Only indexes are written; table rows never are. Returns the checks, led by a `reindex`
/// check (unless [`Reindex::No`]) that lists the indexes rebuilt as its `objects` and what the
/// first check found in them as its `findings`, and the indexes rebuilt.
pub(crate) fn checks_with_reindex(
    db_path: &Path,
    reindex: Reindex,
    run: &mut dyn FnMut(bool) -> Vec<Check>,
) -> (Vec<Check>, Vec<String>) {
    let rebuilt_check = |rebuilt: &[String], detail: String| {
        let mut c = Check::pass("reindex", detail);
        c.objects = rebuilt.to_vec();
        c
    };
    let with = |first: Check, rest: Vec<Check>| {
        let mut checks = vec![first];
        checks.extend(rest);
        checks
    };
    match reindex {
        Reindex::No => (run(false), Vec::new()),
        Reindex::All => match db::reindex(db_path, None) {
            Ok(rebuilt) if rebuilt.is_empty() => (
                with(
                    Check::pass("reindex", "nothing to rebuild: the database has no index"),
                    run(false),
                ),
                rebuilt,
            ),
            Ok(rebuilt) => {
                let detail = format!(
                    "rebuilt every index from its table before the checks ({}: {}); table rows untouched",
                    rebuilt.len(),
                    name_list(&rebuilt)
                );
                (with(rebuilt_check(&rebuilt, detail), run(true)), rebuilt)
            }
            Err(e) => (with(reindex_failed(e), run(false)), Vec::new()),
        },
        Reindex::Disputed => {
            let first = run(false);
            let disputed = first
                .iter()
                .find(|c| c.failed() && c.findings.iter().any(|f| f.class == ProblemClass::Index));
            let Some(found) = disputed else {
                let none = Check::pass("reindex", "nothing to rebuild: no index disagrees with its table");
                return (with(none, first), Vec::new());
            };
            if found.class == Some(ProblemClass::Storage) {
                let not = Check::skipped(
                    "reindex",
                    format!(
                        "not run: {} found storage damage, which rebuilding indexes cannot repair",
                        found.name
                    ),
                );
                return (with(not, first), Vec::new());
            }
            let index_findings: Vec<Finding> = found
                .findings
                .iter()
                .filter(|f| f.class == ProblemClass::Index)
                .cloned()
                .collect();
            let names: Vec<String> = index_findings.iter().filter_map(|f| f.object.clone()).collect();
            let (which, why) = if found.truncated {
                (
                    None,
                    "every index (the first check stopped at its limit, so more may be disputed)",
                )
            } else {
                (Some(names.as_slice()), "the disputed indexes")
            };
            let check_name = found.name.clone();
            match db::reindex(db_path, which) {
                Ok(rebuilt) => {
                    let total: u64 = index_findings.iter().map(|f| f.count).sum();
                    let detail = format!(
                        "rebuilt {why} from their tables, then ran the checks again: {} (the first {check_name} \
                         found {total} index problems in {}); table rows untouched",
                        name_list(&rebuilt),
                        name_list(&names)
                    );
                    let mut c = rebuilt_check(&rebuilt, detail);
                    c.findings = index_findings;
                    (with(c, run(true)), rebuilt)
                }
                Err(e) => (with(reindex_failed(e), first), Vec::new()),
            }
        }
    }
}

/// Names for a line of text: the first ten, then how many more.
fn name_list(names: &[String]) -> String {
    let mut s = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 10 {
        s += &format!(" and {} more", names.len() - 10);
    }
    s
}

/// The `reindex` check when rebuilding failed (and was rolled back): what SQLite said, without
/// the temp file's name.
fn reindex_failed(e: Error) -> Check {
    match e {
        Error::CorruptDatabase { detail, .. } => Check::fail("reindex", detail),
        e => Check::fail("reindex", e.to_string()),
    }
}

fn verify_archive(
    ctx: &Context,
    path: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    crate::fsutil::sweep_leftovers(&base);
    let tmp = crate::fsutil::temp_dir_in(&base)?;
    let db_path = tmp.path().join("database.sqlite");
    // The database is extracted in full: the temp directory needs its declared size.
    if let Ok(m) = archive::read_manifest(path, ctx.identities()) {
        crate::fsutil::ensure_space(tmp.path(), m.db_size)?;
    }
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        kind: "archive".into(),
        ok: false,
        checks: Vec::new(),
        manifest: None,
        reindexed: Vec::new(),
        duration_ms: 0,
    };
    let contents = match extract(ctx, path, &db_path, progress) {
        Ok(c) => c,
        Err(e) if e.class() == ErrorClass::Corrupt => {
            // A damaged archive is a verification result, not a failure to verify; still say
            // what the manifest claims when its head is readable.
            report.manifest = archive::read_manifest(path, ctx.identities()).ok();
            report
                .checks
                .push(Check::fail("archive structure", e.to_string()));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    report.checks.push(Check::pass(
        "archive structure",
        format!(
            "{} tar with manifest.json, database.sqlite, SHA256SUMS",
            contents.compression
        ),
    ));
    report.checks.extend(contents.checksum_checks());
    if contents.manifest.kind == "incremental" {
        report.checks.push(Check::pass(
            "chain",
            format!(
                "{} links composed (every link's checksums and identity checked); the result is the one recorded ({})",
                contents.manifest.chain_depth + 1,
                if contents.manifest.snapshot_sha256.is_some() {
                    "its SHA-256"
                } else {
                    "the SHA-256 of its page hashes"
                }
            ),
        ));
    }
    let (checks, reindexed) = checks_with_reindex(&db_path, opts.reindex, &mut |rebuilt| {
        extracted_checks(&db_path, &contents.manifest, opts.quick, true, rebuilt)
    });
    report.checks.extend(checks);
    report.reindexed = reindexed;
    report.manifest = Some(contents.manifest);
    Ok(report)
}

/// Why `--reindex` does nothing to a dump.
pub(crate) const DUMP_REINDEX: &str =
    "not needed: a dump's indexes are built from its rows, by this SQLite, as it loads";

/// Rebuilds a dump's database in a private temp directory and checks it (see
/// [`crate::format::dump::check`]).
fn verify_dump(
    ctx: &Context,
    path: &Path,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    crate::fsutil::sweep_leftovers(&base);
    let tmp = crate::fsutil::temp_dir_in(&base)?;
    let db_path = tmp.path().join("database.sqlite");
    let manifest = crate::format::dump::read_any_manifest(path, ctx.identities())
        .ok()
        .map(|(_, m)| m);
    if let Some(m) = &manifest {
        crate::fsutil::ensure_space(tmp.path(), m.db_size)?;
    }
    let mut report = VerifyReport {
        path: path.to_path_buf(),
        kind: "dump".into(),
        ok: false,
        checks: Vec::new(),
        manifest: manifest.filter(|m| !m.tool_version.is_empty()),
        reindexed: Vec::new(),
        duration_ms: 0,
    };
    match crate::format::dump::check::load_checked(
        path,
        &db_path,
        opts.quick,
        true,
        progress,
        ctx.identities(),
    ) {
        Ok(loaded) => {
            if opts.reindex != Reindex::No {
                report.checks.push(Check::skipped("reindex", DUMP_REINDEX));
            }
            report.checks.extend(loaded.checks);
            if !loaded.manifest.tool_version.is_empty() {
                report.manifest = Some(loaded.manifest);
            }
        }
        Err(e) if e.class() == ErrorClass::Corrupt => {
            report.checks.push(Check::fail("dump structure", e.to_string()));
        }
        Err(e) => return Err(e),
    }
    Ok(report)
}

/// Whether `path` is an incremental archive (its head says so).
fn is_incremental(ctx: &Context, path: &Path) -> bool {
    archive::read_manifest(path, ctx.identities()).is_ok_and(|m| m.kind == "incremental")
}

/// Streams an archive's database into `db_path` (created) and returns what was read. The file
/// is a scratch copy: it is not fsynced.
pub(crate) fn extract(
    ctx: &Context,
    path: &Path,
    db_path: &Path,
    progress: &dyn Progress,
) -> Result<ArchiveContents> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(db_path)
        .map_err(|e| Error::io("create", db_path, e))?;
    if is_incremental(ctx, path) {
        return crate::ops::chain::compose(ctx, path, &file, db_path, &mut archive::DiscardFiles, progress);
    }
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let contents = archive::read_archive(path, &mut out, progress, ctx.identities())?;
    out.flush().map_err(|e| Error::io("write", db_path, e))?;
    Ok(contents)
}

/// Like [`extract`] into an already open file that is to be kept: the kernel is asked to
/// write it to disk as it goes ([`WritebackFile`]), so the caller's fsync, which is still
/// needed, finds little left to do. The archive's files go to `files`. Returns the file, not
/// yet fsynced.
pub(crate) fn extract_into(
    ctx: &Context,
    path: &Path,
    file: std::fs::File,
    db_path: &Path,
    files: &mut dyn archive::FileSink,
    progress: &dyn Progress,
) -> Result<(ArchiveContents, std::fs::File)> {
    if is_incremental(ctx, path) {
        let contents = crate::ops::chain::compose(ctx, path, &file, db_path, files, progress)?;
        return Ok((contents, file));
    }
    let mut out = BufWriter::with_capacity(1 << 20, WritebackFile::new(file));
    let contents = archive::read_archive_with(path, &mut out, files, progress, ctx.identities())?;
    out.flush().map_err(|e| Error::io("write", db_path, e))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io("write", db_path, e.into_error()))?
        .into_inner();
    Ok((contents, file))
}

/// Checks an extracted database against its manifest and with SQLite's own checks, in three
/// threads on three connections: the b-tree part of `integrity_check` (or `quick_check`) and
/// the foreign-key check on one whose virtual-table modules are dropped; the virtual tables'
/// part of that check and the FTS checks on another; header state and row counts on a third.
/// Together that is SQLite's whole check (see [`db::drop_vtab_modules`]). With `quick`, the
/// virtual tables' part is left out (storage-level checks only, FTS checks reported skipped).
/// With `writable`, FTS tables also get their `'integrity-check'` command, which compares an
/// external-content index with its content table; without it, the FTS checks are the virtual
/// tables' part of the whole check, reported per table rather than run twice. What the
/// integrity check finds is classified ([`crate::sqlite::findings`]). After indexes were `rebuilt`
/// the file's page count is its own, so it is not compared with the manifest's.
pub(crate) fn extracted_checks(
    db_path: &Path,
    manifest: &Manifest,
    quick: bool,
    writable: bool,
    rebuilt: bool,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let (conn, btree_conn) = match (
        db::open_private(db_path, writable),
        db::open_private(db_path, false),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            checks.push(Check::fail("open database", e.to_string()));
            return checks;
        }
    };
    let name = if quick { "quick_check" } else { "integrity_check" };
    type Part = rusqlite::Result<(Findings, rusqlite::Result<u64>)>;
    let (btree, vtabs, fts_tables, fts) = std::thread::scope(|s| {
        let btree = s.spawn(move || -> Part {
            db::drop_vtab_modules(&btree_conn)?;
            let found = db::integrity_findings(&btree_conn, !quick, PROBLEM_LIMIT);
            Ok((found, db::foreign_key_violations(&btree_conn)))
        });
        // Header state and row counts on a third connection: the FTS part is usually the
        // longest, so it gets a thread of its own.
        let info = s.spawn(|| {
            let conn = db::open_private(db_path, false)?;
            DbInfo::read(&conn, db_path)
        });
        // `quick`: storage-level checks only; full-text indexes are not re-read. `writable`:
        // each FTS table gets its own `'integrity-check'` command below, which does all its
        // integrity method does (and compares an external-content index with its content
        // table), so the method is not run on it first: each full-text index is read once.
        let fts_listed = db::fts_tables(&conn);
        let vtabs = match (&fts_listed, quick, writable) {
            (_, true, _) => Ok(Vec::new()),
            (Ok(fts), false, true) => {
                let except: Vec<&str> = fts.iter().map(|(t, _)| t.as_str()).collect();
                db::vtab_problems(&conn, true, 20, &except)
            }
            _ => db::vtab_problems(&conn, true, 20, &[]),
        };
        match info
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidOption("row count thread panicked".into())))
        {
            Ok(info) => {
                checks.push(crate::format::manifest::compare_header(manifest, &info, rebuilt));
                checks.push(compare_counts(manifest, &info));
            }
            Err(e) => checks.push(Check::fail("manifest header", e.to_string())),
        }
        let fts_tables = fts_listed;
        let fts = fts_tables.as_ref().map_err(|e| e.to_string()).map(|tables| {
            tables
                .iter()
                .map(|(table, module)| {
                    if quick {
                        db::fts_skipped_quick(table, module)
                    } else if writable {
                        db::fts_check(&conn, table, module, true)
                    } else {
                        let check_name = format!("{module} integrity {table}");
                        match vtabs.as_ref().map(|v| v.iter().find(|(t, _)| t == table)) {
                            Ok(Some((_, p))) => {
                                let mut found = Findings::default();
                                p.iter().for_each(|m| found.add_vtab(table, Some(module), m));
                                Check::from_findings(check_name, found)
                            }
                            Ok(None) => Check::fail(check_name, "not checked"),
                            Err(e) => Check::fail(check_name, e.to_string()),
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        let btree = btree
            .join()
            .unwrap_or_else(|_| Err(rusqlite::Error::InvalidQuery));
        (btree, vtabs, fts_tables, fts)
    });
    let modules: Vec<(String, String)> = fts_tables.unwrap_or_default();
    let (found, fk) = match (btree, vtabs) {
        (Ok((mut found, fk)), Ok(vtabs)) => {
            for (table, problems) in vtabs {
                let module = modules.iter().find(|(t, _)| *t == table).map(|(_, m)| m.as_str());
                problems.iter().for_each(|m| found.add_vtab(&table, module, m));
            }
            (Ok(found), fk)
        }
        (Err(e), _) | (_, Err(e)) => (Err(e), Err(rusqlite::Error::InvalidQuery)),
    };
    checks.push(match found {
        Ok(found) => Check::from_findings(name, found),
        Err(e) => {
            let mut found = Findings::default();
            found.add_error(&e);
            Check::from_findings(name, found)
        }
    });
    checks.push(db::fk_check(fk, Some(manifest.foreign_key_violations)));
    match fts {
        Ok(fts) => checks.extend(fts),
        Err(e) => checks.push(Check::fail("fts tables", e.to_string())),
    }
    checks
}

fn compare_counts(m: &Manifest, info: &DbInfo) -> Check {
    let mut diffs = Vec::new();
    let mut compared = 0;
    let found: std::collections::HashMap<&str, &db::TableEntry> =
        info.tables.iter().map(|t| (t.name.as_str(), t)).collect();
    let recorded: std::collections::HashSet<&str> = m.db.tables.iter().map(|t| t.name.as_str()).collect();
    for t in &m.db.tables {
        let Some(expected) = t.rows else { continue };
        match found.get(t.name.as_str()) {
            Some(found) if found.rows == Some(expected) => compared += 1,
            Some(found) => diffs.push(format!(
                "{}: manifest {expected}, database {}",
                t.name,
                found
                    .rows
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unreadable".into())
            )),
            None => diffs.push(format!("{}: missing from the database", t.name)),
        }
    }
    for t in &info.tables {
        if !recorded.contains(t.name.as_str()) {
            diffs.push(format!("{}: not in the manifest", t.name));
        }
    }
    if diffs.is_empty() {
        Check::pass("row counts", format!("{compared} tables match the manifest"))
    } else {
        Check::fail("row counts", diffs.join("; "))
    }
}
