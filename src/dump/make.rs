//! Making a dump file (`backup --format sql`) and re-dumping a restored database to prove a
//! round trip.
//!
//! A dump is taken from a snapshot (the same consistent copy an archive backup starts from, see
//! [`crate::snapshot`]), checked with `quick_check`, planned (an unsupported virtual table is
//! refused before an output file exists), then written as header, data section and trailer
//! through the compressor into a temp file that is fsynced and renamed into place.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::write::{self, DumpPlan, Selection};
use super::{Trailer, CREATED_PREFIX, MANIFEST_PREFIX, TRAILER_PREFIX};
use crate::archive::{Encoder, HashWriter};
use crate::backup::{self, BackupOptions, BackupReport};
use crate::db::{self, hex};
use crate::error::{Error, Result};
use crate::fsutil::{self, AtomicFile};
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
    let output = match &opts.output {
        Some(out) => {
            if out.exists() && !opts.overwrite {
                return Err(Error::WouldOverwrite { path: out.clone() });
            }
            out.clone()
        }
        None => {
            let dir = opts.dir.clone().unwrap_or_else(backup::default_backup_dir);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create backup directory", &dir, e))?;
            backup::unique_name(&dir, &default_name(&source, opts, &stamp))
        }
    };
    let out_dir = fsutil::parent_dir(&output);
    if !out_dir.is_dir() {
        return Err(Error::NotFound { path: out_dir });
    }
    backup::refuse_writing_over_source(&source, &output)?;
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

    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&source)
            .map(|m| m.permissions().mode() & 0o666)
            .unwrap_or(0o600)
    };
    let mut out = AtomicFile::create(&output, mode)?;
    let tmp_path = out.temp_path().to_path_buf();
    let io_err = |e| Error::io("write dump", &tmp_path, e);
    let file = out.file().try_clone().map_err(io_err)?;
    let file_hashed = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut enc = Encoder::new(file_hashed, opts.compression, opts.level).map_err(io_err)?;
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
    let mut file_hashed = enc.finish().map_err(io_err)?;
    file_hashed.flush().map_err(io_err)?;
    clock.lap("dump");
    let archive_sha256 = hex(&file_hashed.hasher.finalize());
    let archive_size = file_hashed.bytes;
    file_hashed
        .inner
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    drop(conn);
    let archive = if opts.output.is_some() {
        if opts.overwrite && output.exists() {
            out.commit_replace()?
        } else {
            out.commit()?
        }
    } else {
        let name = output.file_name().map(PathBuf::from).unwrap_or_default();
        out.set_final_path(backup::unique_name(&out_dir, &name));
        out.commit()?
    };
    let snapshot_ms = snap.stats.duration_ms;
    drop(snap);
    Ok(BackupReport {
        archive,
        source,
        archive_size,
        db_size,
        archive_sha256,
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

fn default_name(source: &Path, opts: &BackupOptions, stamp: &str) -> PathBuf {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "database".into());
    let tag = opts.tag.as_deref().map(|t| format!("-{t}")).unwrap_or_default();
    PathBuf::from(format!(
        "{stem}{tag}-{stamp}{}",
        super::extension(opts.compression)
    ))
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
