//! Rebuilding a database from a dump in a private file and checking it: what `restore` runs
//! before anything is swapped and what `verify` runs on a dump.
//!
//! Checks, by name: `dump structure` and `checksum dump` (from [`super::load`]), `manifest
//! header` (page size, encoding, auto_vacuum, user_version, application_id, journal mode),
//! `row counts` (every table, virtual table of the manifest), `round trip` (the rebuilt
//! database dumps back to exactly the same text: every value, rowid, schema object and header
//! field), then SQLite's `integrity_check`/`quick_check`, `foreign_key_check` and FTS checks.

use std::path::Path;

use super::format::Content;
use super::load::{self, LoadReport};
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::progress::Progress;
use crate::sqlite::db::{self, Check, CheckOptions, DbInfo};

/// A dump loaded into a file, with its checks.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The dump's own manifest (litevault dumps) or one describing the loaded database
    /// (foreign dumps).
    pub manifest: Manifest,
    /// The manifest with its database part read from the loaded file (page count and all):
    /// what the restored database must look like.
    pub loaded: Manifest,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// What loading did.
    pub report: LoadReport,
}

/// A manifest for a dump without one, from what is known: the file. Marks it as foreign
/// (empty `tool_version`).
pub fn foreign_manifest(path: &Path, compression: crate::model::compression::Compression) -> Manifest {
    let file = crate::location::object_size(path).unwrap_or(0);
    // Text is rarely smaller than its database; compressed text is about a quarter.
    let estimate = if compression == crate::model::compression::Compression::None {
        file
    } else {
        file.saturating_mul(4)
    };
    let pages = estimate.div_ceil(4096).max(1);
    Manifest {
        compression,
        ..Manifest::new(
            "sql",
            DbInfo {
                page_size: 4096,
                page_count: pages,
                freelist_count: 0,
                journal_mode: "delete".into(),
                encoding: "UTF-8".into(),
                user_version: 0,
                application_id: 0,
                auto_vacuum: "none".into(),
                tables: Vec::new(),
            },
        )
    }
}

/// Loads the dump at `path` into the new file `db_path` and checks the result. `quick` skips
/// the round-trip re-dump and runs `quick_check` instead of `integrity_check`; `writable`
/// lets the FTS checks run their write-form commands (private copies only).
pub fn load_checked(
    path: &Path,
    db_path: &Path,
    quick: bool,
    writable: bool,
    progress: &dyn Progress,
    ids: &crate::format::crypt::Identities,
) -> Result<Loaded> {
    let (compression, content, mut reader) = super::format::open_with(path, true, ids)?;
    let report = load::load(path, content, &mut *reader, db_path, progress)?;
    drop(reader);
    let foreign = content == Content::ForeignDump;
    let want_wal = match &report.header {
        Some(h) => h.manifest.db.journal_mode == "wal",
        None => report.journal_mode.as_deref() == Some("wal"),
    };
    {
        let conn = rusqlite::Connection::open(db_path).map_err(|e| Error::sqlite("open", db_path, e))?;
        let mode = if want_wal { "WAL" } else { "DELETE" };
        conn.query_row(&format!("PRAGMA journal_mode={mode}"), [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(|e| Error::sqlite("set journal mode of", db_path, e))?;
        conn.close()
            .map_err(|(_, e)| Error::sqlite("close", db_path, e))?;
    }
    std::fs::File::open(db_path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("fsync", db_path, e))?;

    let mut checks = report.checks.clone();
    let conn = db::open_private(db_path, writable)?;
    let info = DbInfo::read(&conn, db_path)?;
    let manifest = match &report.header {
        Some(h) => h.manifest.clone(),
        None => {
            let mut m = foreign_manifest(path, compression);
            m.db = info.clone();
            m.db_size = info.page_count * info.page_size as u64;
            m.db.tables
                .retain(|t| t.kind != "shadow" && !t.name.starts_with("sqlite_"));
            m
        }
    };
    let mut loaded = manifest.clone();
    loaded.db = info.clone();
    loaded.db_size = info.page_count * info.page_size as u64;
    if !foreign {
        checks.push(crate::format::manifest::compare_header(&manifest, &info, true));
        checks.push(compare_counts(&manifest, &info));
    }
    // The round trip (a full re-dump) and SQLite's checks both only read the file: run them on
    // two cores when nothing writes (restore). verify's FTS checks use the write form, so there
    // they run one after the other.
    let round_trip = || -> Option<Check> {
        if foreign {
            return None;
        }
        Some(match (&report.header, &report.trailer, quick) {
            (_, _, true) => Check::skipped("round trip", "not run with --quick"),
            (Some(h), Some(t), false) => match super::make::redump(db_path, &h.hashed) {
                Ok(again) if again.sha256 == t.sha256 => Check::pass(
                    "round trip",
                    format!("the rebuilt database dumps back to the same {} statements", t.statements),
                ),
                Ok(again) => Check::fail(
                    "round trip",
                    format!(
                        "the rebuilt database dumps to different text ({} statements, {} bytes; the dump has {} and {})",
                        again.statements, again.data_bytes, t.statements, t.data_bytes
                    ),
                ),
                Err(e) => Check::fail("round trip", e.to_string()),
            },
            _ => Check::skipped("round trip", "no end line to compare with"),
        })
    };
    let sqlite_checks = || {
        let fk_now = db::foreign_key_violations(&conn).ok();
        let mut sqlite_checks = db::run_checks(
            &conn,
            CheckOptions {
                quick,
                writable,
                expected_fk_violations: if foreign {
                    fk_now
                } else {
                    Some(manifest.foreign_key_violations)
                },
            },
        );
        if foreign {
            for c in &mut sqlite_checks {
                if c.name == "foreign_key_check" && fk_now.unwrap_or(0) > 0 {
                    c.detail = format!(
                        "{} violations in the dump's data (a foreign dump has no record to compare with)",
                        fk_now.unwrap_or(0)
                    );
                }
            }
        }
        sqlite_checks
    };
    let (trip, sqlite_checks) = if writable {
        (round_trip(), sqlite_checks())
    } else {
        std::thread::scope(|scope| {
            let trip = scope.spawn(round_trip);
            let sq = sqlite_checks();
            let trip = trip
                .join()
                .unwrap_or_else(|_| Some(Check::fail("round trip", "the re-dump thread panicked")));
            (trip, sq)
        })
    };
    checks.extend(trip);
    checks.extend(sqlite_checks);
    Ok(Loaded {
        manifest,
        loaded,
        checks,
        report,
    })
}

/// Row counts of every table the manifest lists; a table the manifest does not list is a
/// failure too, unless SQLite or a virtual table made it (shadow and `sqlite_` tables).
fn compare_counts(m: &Manifest, info: &DbInfo) -> Check {
    let mut diffs = Vec::new();
    for t in &m.db.tables {
        let found = info.tables.iter().find(|f| f.name == t.name);
        match (found, t.rows) {
            (None, _) => diffs.push(format!("{}: missing from the database", t.name)),
            (Some(f), Some(n)) if f.rows != Some(n) => diffs.push(format!(
                "{}: manifest {n}, database {}",
                t.name,
                f.rows
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "unreadable".into())
            )),
            _ => {}
        }
    }
    for f in &info.tables {
        if f.kind != "shadow"
            && !f.name.starts_with("sqlite_")
            && !m.db.tables.iter().any(|t| t.name == f.name)
        {
            diffs.push(format!("{}: not in the manifest", f.name));
        }
    }
    if diffs.is_empty() {
        Check::pass(
            "row counts",
            format!(
                "{} tables match the manifest ({} rows)",
                m.db.tables.len(),
                m.total_rows()
            ),
        )
    } else {
        Check::fail("row counts", diffs.join("; "))
    }
}
