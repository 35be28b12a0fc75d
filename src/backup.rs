//! `backup`: a consistent snapshot of a live database, checked and streamed into an archive.
//!
//! Order of work: take a snapshot into a private temp directory beside the output (see
//! [`crate::snapshot`]), run `quick_check` on it and read its header state and row counts, then
//! stream manifest, database and checksums into a temp archive that is fsynced and renamed into
//! place. A failure at any step leaves no archive behind (the temp files are removed, and a
//! crash leaves only hidden `.litevault-*` files, never a partial file under a final name).

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveWriter, Compression, DATABASE_ENTRY, MANIFEST_ENTRY};
use crate::db::{self, DbInfo};
use crate::error::{Error, Result};
use crate::fsutil::{self, AtomicFile};
use crate::manifest::{Manifest, FORMAT};
use crate::progress::Progress;
use crate::snapshot::{self, Method, SnapshotLimits};

/// Options of [`backup`].
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Write the archive to this file (must not exist unless `overwrite`).
    pub output: Option<PathBuf>,
    /// Otherwise write `<stem>-<stamp>.tar.zst` into this directory (default:
    /// [`default_backup_dir`]).
    pub dir: Option<PathBuf>,
    /// How to take the snapshot.
    pub method: Method,
    /// Archive compression.
    pub compression: Compression,
    /// Compression level (codec default when `None`).
    pub level: Option<i32>,
    /// Archive a database that fails `quick_check`, marked `corrupt` in the manifest.
    pub allow_corrupt: bool,
    /// Replace an existing `output` file (atomically).
    pub overwrite: bool,
    /// A word added to the default file name, e.g. "pre-restore".
    pub tag: Option<String>,
    /// Tuning of the snapshot loop.
    pub limits: SnapshotLimits,
    /// An archive of the database file (default) or an SQL dump.
    pub format: Format,
    /// For SQL dumps: which tables to dump.
    pub selection: crate::dump::write::Selection,
}

/// What a backup writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A tar archive holding the database file (`.tar.zst`).
    #[default]
    Archive,
    /// SQL text (`.sql.zst`, or plain `.sql`): exact, deterministic, diffable.
    Sql,
}

/// What a backup did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupReport {
    /// The archive written.
    pub archive: PathBuf,
    /// The source database (absolute).
    pub source: PathBuf,
    /// Bytes of the archive file.
    pub archive_size: u64,
    /// Bytes of the database inside.
    pub db_size: u64,
    /// SHA-256 of the archive file.
    pub archive_sha256: String,
    /// SHA-256 of `database.sqlite` inside it.
    pub database_sha256: String,
    /// Milliseconds the whole backup took.
    pub duration_ms: u64,
    /// Milliseconds the snapshot took (the only part that reads the source).
    pub snapshot_ms: u64,
    /// Snapshot restarts caused by concurrent writers.
    pub restarts: u32,
    /// How the snapshot was taken.
    pub method: Method,
    /// Compression used.
    pub compression: Compression,
    /// Tables (of every kind) in the database.
    pub tables: usize,
    /// Rows in ordinary tables.
    pub rows: u64,
    /// True when the database failed `quick_check` and was archived anyway.
    pub corrupt: bool,
}

/// The default backup directory: `$LITEVAULT_DIR`, else the platform data directory's
/// `litevault/backups` (e.g. `~/.local/share/litevault/backups`).
pub fn default_backup_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LITEVAULT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::data_dir()
        .map(|d| d.join("litevault").join("backups"))
        .unwrap_or_else(|| PathBuf::from("litevault-backups"))
}

/// The current UTC time as (RFC 3339, compact file-name stamp, seconds since the epoch).
pub(crate) fn now_stamps() -> (String, String, u64) {
    let now = time::OffsetDateTime::now_utc();
    let rfc = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let compact = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    (rfc, compact, now.unix_timestamp().max(0) as u64)
}

pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Backs up the database at `source` into an archive.
///
/// ```no_run
/// use litevault::{backup, BackupOptions, NoProgress};
/// let opts = BackupOptions { dir: Some("/backups".into()), ..Default::default() };
/// let report = backup("app.db".as_ref(), &opts, &NoProgress)?;
/// println!("wrote {} ({} bytes)", report.archive.display(), report.archive_size);
/// # Ok::<(), litevault::Error>(())
/// ```
pub fn backup(source: &Path, opts: &BackupOptions, progress: &dyn Progress) -> Result<BackupReport> {
    let started = Instant::now();
    if let Some(level) = opts.level {
        opts.compression.check_level(level)?;
    }
    if opts.format == Format::Sql {
        return crate::dump::make::backup_sql(source, opts, progress);
    }
    if !opts.selection.tables.is_empty() || !opts.selection.exclude.is_empty() {
        return Err(Error::InvalidOption(
            "--table and --exclude-table apply to SQL dumps (--format sql)".into(),
        ));
    }
    db::precheck(source)?;
    let source = std::path::absolute(source).map_err(|e| Error::io("resolve", source, e))?;
    let (created_at, stamp, mtime) = now_stamps();

    let output = match &opts.output {
        Some(out) => {
            if out.exists() && !opts.overwrite {
                return Err(Error::WouldOverwrite { path: out.clone() });
            }
            out.clone()
        }
        None => {
            let dir = opts.dir.clone().unwrap_or_else(default_backup_dir);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create backup directory", &dir, e))?;
            unique_name(
                &dir,
                &archive::default_file_name(&source, opts.tag.as_deref(), &stamp, opts.compression),
            )
        }
    };
    let out_dir = fsutil::parent_dir(&output);
    if !out_dir.is_dir() {
        return Err(Error::NotFound { path: out_dir });
    }
    refuse_writing_over_source(&source, &output)?;
    // The snapshot and the archive both live in the output directory until the rename.
    let source_size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(fsutil::sidecar(&source, "-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    let archive_estimate = if opts.compression == Compression::None {
        source_size
    } else {
        source_size / 3
    };
    fsutil::ensure_space(&out_dir, source_size + archive_estimate)?;

    let snap = snapshot::take(&source, &out_dir, opts.method, opts.limits, progress)?;
    let (info, problems, fk_violations) = inspect_snapshot(snap.path(), opts.allow_corrupt)?;
    if !problems.is_empty() && !opts.allow_corrupt {
        return Err(Error::CorruptDatabase {
            path: source,
            detail: problems.join("; "),
        });
    }
    let db_size = std::fs::metadata(snap.path())
        .map_err(|e| Error::io("stat", snap.path(), e))?
        .len();
    let manifest = Manifest {
        format: FORMAT.into(),
        kind: "full".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_at,
        source: source.to_string_lossy().into_owned(),
        host: host_name(),
        sqlite_version: rusqlite::version().into(),
        method: opts.method,
        compression: opts.compression,
        compression_level: opts.level.or(opts.compression.default_level()),
        db_size,
        source_journal_mode: snap.stats.source_journal_mode.clone(),
        snapshot_restarts: snap.stats.restarts,
        quick_check: if problems.is_empty() {
            "ok".into()
        } else {
            problems.join("; ")
        },
        corrupt: !problems.is_empty(),
        foreign_key_violations: fk_violations,
        db: info,
    };
    manifest.validate().map_err(|r| Error::CorruptDatabase {
        path: source.clone(),
        detail: r,
    })?;
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");

    // An archive is as sensitive as its database: it gets the source's permission bits.
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&source)
            .map(|m| m.permissions().mode() & 0o666)
            .unwrap_or(0o600)
    };
    let mut out = AtomicFile::create(&output, mode)?;
    let tmp_path = out.temp_path().to_path_buf();
    let io_err = |e| Error::io("write archive", &tmp_path, e);
    let file = out.file().try_clone().map_err(io_err)?;
    let mut writer = ArchiveWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        opts.compression,
        opts.level,
        mtime,
    )
    .map_err(io_err)?;
    writer
        .append_bytes(MANIFEST_ENTRY, &manifest_json)
        .map_err(io_err)?;
    let snap_file = std::fs::File::open(snap.path()).map_err(|e| Error::io("open", snap.path(), e))?;
    progress.begin("compress", Some(db_size));
    let database_sha256 = writer
        .append_stream(DATABASE_ENTRY, db_size, snap_file, progress)
        .map_err(io_err)?;
    progress.end();
    let written = writer.finish().map_err(io_err)?;
    written.inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    let archive = if opts.output.is_some() {
        if opts.overwrite && output.exists() {
            out.commit_replace()?
        } else {
            out.commit()?
        }
    } else {
        // Another backup may have taken the default name meanwhile: take the next free one.
        let name = output.file_name().map(PathBuf::from).unwrap_or_default();
        out.set_final_path(unique_name(&out_dir, &name));
        out.commit()?
    };
    let snap_ms = snap.stats.duration_ms;
    drop(snap);

    Ok(BackupReport {
        archive,
        source,
        archive_size: written.size,
        db_size,
        archive_sha256: written.sha256,
        database_sha256,
        duration_ms: started.elapsed().as_millis() as u64,
        snapshot_ms: snap_ms,
        restarts: manifest.snapshot_restarts,
        method: opts.method,
        compression: opts.compression,
        tables: manifest.db.tables.len(),
        rows: manifest.total_rows(),
        corrupt: manifest.corrupt,
    })
}

/// Reads header state, row counts, `quick_check` problems and foreign-key violations of a
/// snapshot. With `allow_corrupt`, a snapshot whose schema cannot be read is described from its
/// header alone instead of failing.
pub(crate) fn inspect_snapshot(path: &Path, allow_corrupt: bool) -> Result<(DbInfo, Vec<String>, u64)> {
    let conn = match db::open_private(path, false) {
        Ok(c) => c,
        Err(Error::CorruptDatabase { detail, .. }) | Err(Error::NotADatabase { reason: detail, .. })
            if allow_corrupt =>
        {
            return Ok((DbInfo::from_header(path)?, vec![detail], 0));
        }
        Err(e) => return Err(e),
    };
    let problems = db::integrity_problems(&conn, false, 10).unwrap_or_else(|e| vec![e.to_string()]);
    if !problems.is_empty() && !allow_corrupt {
        return Ok((DbInfo::from_header(path)?, problems, 0));
    }
    let info = match DbInfo::read(&conn, path) {
        Ok(i) => i,
        Err(_) if allow_corrupt => DbInfo::from_header(path)?,
        Err(e) => return Err(e),
    };
    let fk = db::foreign_key_violations(&conn).unwrap_or(0);
    Ok((info, problems, fk))
}

/// Refuses an output path that is the source database or one of its side files (`-o app.db
/// --overwrite` must never replace the database being backed up).
pub(crate) fn refuse_writing_over_source(source: &Path, output: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(output) else {
        return Ok(());
    };
    for p in [
        source.to_path_buf(),
        fsutil::sidecar(source, "-wal"),
        fsutil::sidecar(source, "-journal"),
        fsutil::sidecar(source, "-shm"),
    ] {
        if let Ok(m) = std::fs::metadata(&p) {
            if m.dev() == out.dev() && m.ino() == out.ino() {
                return Err(Error::InvalidOption(format!(
                    "the output {} is the database being backed up ({})",
                    output.display(),
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// `name` in `dir`, or `name` with `-2`, `-3`, ... before its extension when taken.
pub(crate) fn unique_name(dir: &Path, name: &Path) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let s = name.to_string_lossy();
    let (stem, ext) = match s.find(".tar").or_else(|| s.rfind(".sql")) {
        Some(i) => (&s[..i], &s[i..]),
        None => (&s[..], ""),
    };
    (2..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("an unused name exists")
}
