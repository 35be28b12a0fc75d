//! Making a dump file (`backup --format sql`) and re-dumping a restored database to prove a
//! round trip.
//!
//! A dump is taken from a snapshot (the same consistent copy an archive backup starts from, see
//! [`crate::snapshot`]), checked with `quick_check`, planned (an unsupported virtual table is
//! refused before an output file exists), then written as header, data section and trailer
//! through the compressor into a temp file that is fsynced and renamed into place.

use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::write::{self, DumpPlan, Selection};
use super::{Trailer, CREATED_PREFIX, MANIFEST_PREFIX, TRAILER_PREFIX};
use crate::archive::{Encoder, HashWriter};
use crate::backup::{self, BackupOptions, BackupReport};
use crate::db::{self, hex};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::manifest::{Manifest, FORMAT};
use crate::progress::{NoProgress, Progress};
use crate::snapshot;

/// `backup --format sql`: dumps the database at `source` into a dump file.
pub(crate) fn backup_sql(
    source: &Path,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    if opts.allow_corrupt {
        return Err(Error::InvalidOption(
            "--allow-corrupt applies to archives (an SQL dump is read through SQLite and needs an intact database)"
                .into(),
        ));
    }
    db::precheck(source)?;
    let source = std::path::absolute(source).map_err(|e| Error::io("resolve", source, e))?;
    let (created_at, stamp, _) = backup::now_stamps();
    let target = backup::Target::resolve(&source, opts, &default_name(&source, opts, &stamp))?;
    let out_dir = target.work_dir.clone();
    fsutil::sweep_leftovers(&out_dir);
    let source_size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(fsutil::sidecar(&source, "-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    // The snapshot, plus the dump (text can be twice the database for BLOB-heavy data).
    let dump_estimate = if opts.compression == crate::Compression::None {
        source_size * 2
    } else {
        source_size / 2
    };
    fsutil::ensure_space(&out_dir, source_size + dump_estimate)?;

    let mut clock = crate::progress::PhaseClock::new();
    let snap = snapshot::take(&source, &out_dir, opts.method, opts.limits, progress)?;
    clock.lap("snapshot");
    let (mut info, problems, fk_violations) = backup::inspect_snapshot(snap.path(), false, opts.check_fts)?;
    if !problems.is_empty() {
        return Err(Error::CorruptDatabase {
            path: source,
            detail: problems.join("; "),
        });
    }
    clock.lap("checks");
    let conn = db::open_private(snap.path(), false)?;
    let plan = write::plan(&conn, &opts.selection).map_err(Error::InvalidOption)?;
    let included: std::collections::HashSet<&str> = plan.included.iter().map(String::as_str).collect();
    info.tables.retain(|t| included.contains(t.name.as_str()));
    let db_size = info.page_count * info.page_size as u64;
    let manifest = Manifest {
        format: FORMAT.into(),
        kind: "sql".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_at: String::new(),
        source: source.to_string_lossy().into_owned(),
        host: backup::host_name(),
        sqlite_version: rusqlite::version().into(),
        method: opts.method,
        compression: opts.compression,
        compression_level: opts.level.or(opts.compression.default_level()),
        db_size,
        source_journal_mode: snap.stats.source_journal_mode.clone(),
        snapshot_restarts: snap.stats.restarts,
        quick_check: "ok".into(),
        corrupt: false,
        foreign_key_violations: fk_violations,
        db: info,
    };
    let manifest_line = format!(
        "{MANIFEST_PREFIX}{}\n",
        serde_json::to_string(&manifest).expect("manifest serializes")
    );

    let out_path = target.loc.object_path(&target.name);
    let io_err = |e| Error::io("write dump", &out_path, e);
    let mut enc = Encoder::new(target.create(0)?, opts.compression, opts.level).map_err(io_err)?;
    let line1 = super::header_line();
    enc.write_all(line1.as_bytes()).map_err(io_err)?;
    enc.write_all(format!("{CREATED_PREFIX}{created_at}\n").as_bytes())
        .map_err(io_err)?;
    enc.write_all(manifest_line.as_bytes()).map_err(io_err)?;
    let mut prefix = line1.into_bytes();
    prefix.extend_from_slice(manifest_line.as_bytes());
    progress.begin("dump", None);
    let trailer = write_hashed(&conn, &plan, &prefix, &mut enc, progress).map_err(io_err)?;
    progress.end();
    let trailer_line = format!(
        "{TRAILER_PREFIX}{}\n",
        serde_json::to_string(&trailer).expect("trailer serializes")
    );
    enc.write_all(trailer_line.as_bytes()).map_err(io_err)?;
    let mut object = enc.finish().map_err(io_err)?;
    object.flush().map_err(io_err)?;
    clock.lap("dump");
    drop(conn);
    let published = object.finish(None)?;
    let snapshot_ms = snap.stats.duration_ms;
    drop(snap);
    Ok(BackupReport {
        archive: published.path,
        source,
        archive_size: published.size,
        db_size,
        archive_sha256: published.sha256,
        database_sha256: trailer.sha256,
        duration_ms: started.elapsed().as_millis() as u64,
        snapshot_ms,
        restarts: manifest.snapshot_restarts,
        method: opts.method,
        compression: opts.compression,
        tables: manifest.db.tables.len(),
        rows: manifest.total_rows(),
        corrupt: false,
        streamed: false,
        phases: {
            clock.lap("fsync and rename");
            clock.into_phases()
        },
    })
}

fn default_name(source: &Path, opts: &BackupOptions, stamp: &str) -> String {
    let stem = opts
        .name
        .clone()
        .unwrap_or_else(|| crate::location::name_of(source));
    let tag = opts.tag.as_deref().map(|t| format!("-{t}")).unwrap_or_default();
    format!("{stem}{tag}-{stamp}{}", super::extension(opts.compression))
}

/// Writes the data section to `out` and returns the trailer: the SHA-256 runs over `prefix`
/// (line 1 and the manifest line) and then the data.
fn write_hashed(
    conn: &rusqlite::Connection,
    plan: &DumpPlan,
    prefix: &[u8],
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<Trailer> {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    let mut h = HashWriter {
        inner: BufWriter::with_capacity(1 << 18, out),
        hasher,
        bytes: 0,
    };
    conn.execute_batch("BEGIN").map_err(io::Error::other)?;
    let stats = write::write_data(conn, plan, &mut h, progress);
    let _ = conn.execute_batch("COMMIT");
    let stats = stats?;
    h.flush()?;
    Ok(Trailer {
        sha256: hex(&h.hasher.finalize()),
        data_bytes: h.bytes,
        statements: stats.statements,
    })
}

/// Re-dumps the database at `db_path` (all of it) and returns the trailer it would have after
/// `prefix`: equal to the original trailer exactly when the round trip was exact.
pub(crate) fn redump(db_path: &Path, prefix: &[u8]) -> Result<Trailer> {
    let conn = db::open_private(db_path, false)?;
    let plan = write::plan(&conn, &Selection::default())
        .map_err(|m| Error::bad_archive(db_path, format!("cannot re-dump: {m}")))?;
    write_hashed(&conn, &plan, prefix, &mut io::sink(), &NoProgress)
        .map_err(|e| Error::io("re-dump", db_path, e))
}
