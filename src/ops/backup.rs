//! `backup`: a consistent snapshot of a live database, checked and streamed into an archive.
//!
//! Order of work for a WAL database (the usual case, `--method pages`): one read transaction
//! on the source fixes the snapshot (`sqlite::snapshot::begin_live`); inside it, `quick_check`
//! runs on a second connection on the same snapshot while the header state, row counts and
//! foreign-key count are read on the first; the manifest is built from them; then every page
//! is read in order and streamed through the hasher and the compressor into a temp archive.
//! Nothing is copied to a temp database. Other sources (rollback journal, `--method vacuum`,
//! an SQLite build without `sqlite_dbpage`, a corrupt database archived with
//! `--allow-corrupt`) are first snapshotted into a private temp file ([`crate::sqlite::snapshot::take`]),
//! which is checked and then streamed the same way.
//!
//! Either way the checks are done before the first byte of the archive (the manifest, its
//! first entry, records them), and the temp archive is fsynced and renamed into place only
//! after everything succeeded. A failure at any step leaves no archive behind (the temp files
//! are removed, and a crash leaves only hidden `.litevault-*` files, never a partial file under
//! a final name).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::archive::{
    self, ArchiveWriter, Codec, Compression, ZstdManifestLastWriter, DATABASE_ENTRY, MANIFEST_ENTRY,
};
use crate::format::files;
use crate::format::manifest::Manifest;
use crate::fsutil;
use crate::location::{self, CreateOptions, Location, NewObject, Published};
use crate::model::hex;
use crate::ops::chain::Parent;
use crate::ops::Context;
use crate::progress::{Phase, PhaseClock, Progress};
use crate::sqlite::db::{self, DbInfo};
use crate::sqlite::snapshot::{self, LiveSnapshot, Method, SnapshotLimits};

/// Options of [`backup`].
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Where the backup goes: a generated name in a location (default), or one file or object.
    pub destination: Destination,
    /// What it writes: an archive of the database file (default) or an SQL dump, each with the
    /// options that only apply to it.
    pub format: Format,
    /// The database's name in the location (default: its file stem).
    pub name: Option<String>,
    /// How to take the snapshot.
    pub method: Method,
    /// Archive compression.
    pub compression: Compression,
    /// Compression level (codec default when `None`).
    pub level: Option<i32>,
    /// Archive a database that fails `quick_check`, marked `corrupt` in the manifest.
    pub allow_corrupt: bool,
    /// Tuning of the snapshot loop.
    pub limits: SnapshotLimits,
    /// Also run each full-text index's own integrity check (part of SQLite's `quick_check`
    /// since 3.44; it re-reads the whole index). By default a backup checks storage only: every
    /// b-tree (shadow tables included) with the page accounting, and the foreign keys.
    pub check_fts: bool,
    /// Do not run the PASSIVE checkpoint of a WAL source after the snapshot is released (see
    /// [`crate::sqlite::snapshot::Checkpoint`]); the application's next commit then does it.
    pub no_checkpoint: bool,
    /// Encrypt the archive or dump (age): it is stored as `<name>.age`, readable only with an
    /// identity of one of the recipients (or the passphrase). See [`crate::format::crypt`].
    pub encrypt: Option<crate::format::crypt::Encryption>,
    /// The application's own metadata, recorded in the manifest (checked:
    /// [`crate::model::labels::check_all`]).
    pub labels: crate::model::labels::Labels,
}

/// A private, consistent copy backed up in place of the database it was made from (a
/// replica's base): the manifest names that database, and the archive's name and times are the
/// moment the copy's state was the database's, not the moment the copy is read.
#[derive(Debug, Clone)]
pub(crate) struct CopyOf {
    /// The database the copy was made from.
    pub source: PathBuf,
    /// When the copy's state was the database's.
    pub at: time::OffsetDateTime,
}

/// Where a backup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// A new object `<name>[-tag]-<stamp>.<ext>` in a location: a directory or
    /// `s3://bucket/prefix` (`None`: [`default_backup_dir`]). Never replaces anything: a
    /// taken name moves on to `-2`, `-3`...
    Location {
        /// The location (`None`: [`default_backup_dir`]).
        dir: Option<PathBuf>,
        /// A word added to the generated name, e.g. "pre-restore".
        tag: Option<String>,
    },
    /// Exactly this file or object (`s3://bucket/key`), which must not exist unless
    /// `overwrite`, which only local files allow (replaced atomically).
    File {
        /// The file or object.
        path: PathBuf,
        /// Replace an existing local file.
        overwrite: bool,
    },
}

impl Default for Destination {
    fn default() -> Self {
        Destination::Location { dir: None, tag: None }
    }
}

impl Destination {
    /// A generated name in the location `dir`.
    pub fn dir(dir: impl Into<PathBuf>) -> Destination {
        Destination::Location {
            dir: Some(dir.into()),
            tag: None,
        }
    }

    /// Exactly the file or object `path` (which must not exist).
    pub fn file(path: impl Into<PathBuf>) -> Destination {
        Destination::File {
            path: path.into(),
            overwrite: false,
        }
    }
}

/// What a backup writes, with the options that apply only to it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Format {
    /// A tar archive holding the database file (`.tar.zst`).
    Archive(ArchiveOptions),
    /// SQL text (`.sql.zst`, or plain `.sql`): exact, deterministic, diffable; these tables.
    Sql(crate::format::dump::write::Selection),
}

impl Default for Format {
    fn default() -> Self {
        Format::Archive(ArchiveOptions::default())
    }
}

impl Format {
    /// "archive" or "sql".
    pub fn kind(&self) -> &'static str {
        match self {
            Format::Archive(_) => "archive",
            Format::Sql(_) => "sql",
        }
    }

    /// The archive options, for an archive backup.
    pub fn archive(&self) -> Option<&ArchiveOptions> {
        match self {
            Format::Archive(a) => Some(a),
            Format::Sql(_) => None,
        }
    }

    /// Whether it is an incremental archive backup.
    pub fn incremental(&self) -> bool {
        self.archive().is_some_and(|a| a.incremental)
    }

    /// An incremental backup's chain length at which a full one is made.
    pub fn full_every(&self) -> Option<u32> {
        self.archive().and_then(|a| a.full_every)
    }

    /// The directories whose files an archive holds beside the database.
    pub fn include(&self) -> &[PathBuf] {
        self.archive().map_or(&[], |a| &a.include)
    }
}

/// The options of an archive backup ([`Format::Archive`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Store only the pages that changed since the newest backup of the same name in the
    /// location (its parent); a full backup when there is no usable parent (the report and
    /// the manifest say why).
    pub incremental: bool,
    /// With `incremental`: a full backup once a chain has this many links (the full one
    /// included).
    pub full_every: Option<u32>,
    /// Directories whose files go into the archive beside the database, each as
    /// `files/<its name>/...` ([`crate::format::files`]); read after the database's snapshot
    /// was fixed.
    pub include: Vec<PathBuf>,
}

impl BackupOptions {
    fn incremental(&self) -> bool {
        self.format.incremental()
    }

    fn full_every(&self) -> Option<u32> {
        self.format.full_every()
    }

    fn include(&self) -> &[PathBuf] {
        self.format.include()
    }

    fn tag(&self) -> Option<&str> {
        match &self.destination {
            Destination::Location { tag, .. } => tag.as_deref(),
            Destination::File { .. } => None,
        }
    }
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
    /// SHA-256 of `database.sqlite` inside it (of the database a restore gives). None for an
    /// incremental backup: its database is identified by its page-hash table instead (see
    /// [`crate::format::manifest::FORMAT_PAGE_TABLE`]).
    pub database_sha256: Option<String>,
    /// Milliseconds the whole backup took.
    pub duration_ms: u64,
    /// Milliseconds the source was read: the temp-copy snapshot, or for a streamed backup the
    /// read transaction, which lasts until the last page is in the archive.
    pub snapshot_ms: u64,
    /// Snapshot restarts caused by concurrent writers.
    pub restarts: u32,
    /// How the snapshot was taken.
    pub method: Method,
    /// Compression used.
    pub compression: Compression,
    /// The database's own tables in the backup: ordinary and virtual tables (the same count
    /// for an archive and a dump of one database).
    pub tables: usize,
    /// The views, shadow tables of virtual tables and SQLite's internal tables
    /// (`sqlite_sequence`, `sqlite_stat1`, ...) the manifest lists besides (a dump lists none).
    #[serde(default)]
    pub other_tables: usize,
    /// Rows in ordinary tables.
    pub rows: u64,
    /// True when the database failed `quick_check` and was archived anyway.
    pub corrupt: bool,
    /// Whether the pages were streamed from the source's read transaction (`true`) or
    /// copied into a temp file first.
    pub streamed: bool,
    /// Wall time of each phase, in order.
    pub phases: Vec<Phase>,
    /// "full", "incremental" or "sql".
    pub kind: String,
    /// For an incremental backup: its parent's object name.
    pub parent: Option<String>,
    /// For an incremental backup: the pages it holds.
    pub changed_pages: Option<u64>,
    /// Why a backup asked to be incremental is a full one.
    pub full_reason: Option<String>,
    /// The PASSIVE checkpoint of a WAL source run once the snapshot was released (none for
    /// other sources, SQL dumps, or with `no_checkpoint`).
    pub checkpoint: Option<crate::sqlite::snapshot::Checkpoint>,
    /// Who can read the backup when it is encrypted ("2 recipients", "a passphrase").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_to: Option<String>,
    /// Entries (files, directories, symlinks) stored beside the database (`include`).
    pub files: u64,
    /// Bytes of the regular files among them.
    pub files_bytes: u64,
    /// Files that vanished between the walk of the included directories and their copy
    /// (left out of the archive).
    pub files_vanished: Vec<String>,
    /// The labels recorded in the manifest.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: crate::model::labels::Labels,
}

/// The default backup location: `$LITEVAULT_DIR` (a directory or `s3://bucket/prefix`), else
/// the platform data directory's `litevault/backups` (e.g. `~/.local/share/litevault/backups`).
pub fn default_backup_dir() -> PathBuf {
    crate::location::default_location()
}

/// Where a backup goes: the location, the object's name, how to create it, and the local
/// directory for temp work (the location's own when local, else the system temp directory).
pub(crate) struct Target {
    pub(crate) loc: std::sync::Arc<dyn Location>,
    pub(crate) name: String,
    pub(crate) create: CreateOptions,
    pub(crate) work_dir: PathBuf,
    pub(crate) encrypt: Option<crate::format::crypt::Encryption>,
    /// Whether `name` is generated (`--dir`), not given (`-o`).
    pub(crate) generated: bool,
}

impl Target {
    /// Resolves `opts.destination` for a backup of `source` named with `default_name`.
    pub(crate) fn resolve(source: &Path, opts: &BackupOptions, default_name: &str) -> Result<Target> {
        // An archive is as sensitive as its database: it gets the source's permission bits.
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(source)
                .map(|m| m.permissions().mode() & 0o666)
                .unwrap_or(0o600)
        };
        let (loc, name, create) = match &opts.destination {
            Destination::File { path: out, overwrite } => {
                if !location::is_remote(out) && out.is_dir() {
                    return Err(Error::InvalidOption(format!(
                        "-o {}: that is a directory; give -o a file name, or --dir {} to back up under a generated name there",
                        out.display(),
                        out.display()
                    )));
                }
                let (loc, name) = location::split_object(out)?;
                if opts.encrypt.is_some() && !name.ends_with(crate::format::crypt::EXTENSION) {
                    return Err(Error::InvalidOption(format!(
                        "{}: an encrypted backup is an age file: give -o a name ending in .age (e.g. {name}.age)",
                        out.display()
                    )));
                }
                if let Some(dir) = loc.local_dir() {
                    if !dir.is_dir() {
                        return Err(Error::NotFound {
                            path: dir.to_path_buf(),
                        });
                    }
                    refuse_writing_over_source(source, out)?;
                }
                let exists = loc.head(&name)?.is_some();
                if exists && *overwrite && loc.local_dir().is_none() {
                    return Err(Error::InvalidOption(format!(
                        "{}: objects in a bucket are never replaced (--overwrite applies to local files)",
                        loc.object_path(&name).display()
                    )));
                }
                if exists && !*overwrite {
                    return Err(Error::WouldOverwrite {
                        path: loc.object_path(&name),
                    });
                }
                let create = CreateOptions {
                    mode,
                    replace: exists,
                    ..Default::default()
                };
                (loc, name, create)
            }
            Destination::Location { dir, .. } => {
                let dir = dir.clone().unwrap_or_else(default_backup_dir);
                let loc = location::open_for_writing(&dir)?;
                let create = CreateOptions {
                    mode,
                    rename_if_taken: true,
                    ..Default::default()
                };
                let name = match &opts.encrypt {
                    Some(_) => format!("{default_name}{}", crate::format::crypt::EXTENSION),
                    None => default_name.to_string(),
                };
                (loc, name, create)
            }
        };
        // An encrypted backup keeps its clear temp files (a snapshot copy, spills, spooled
        // files) out of the location: a directory it writes to may be a share or a synced folder.
        let work_dir = match (&opts.encrypt, loc.local_dir()) {
            (None, Some(dir)) => dir.to_path_buf(),
            _ => std::env::temp_dir(),
        };
        Ok(Target {
            loc,
            name,
            generated: matches!(opts.destination, Destination::Location { .. }),
            create,
            work_dir,
            encrypt: opts.encrypt.clone(),
        })
    }

    /// Creates the object, with `head_reserve` bytes reserved at its head; encrypted when the
    /// options say so (the clear bytes then go through [`crate::format::crypt::encrypting`]).
    pub(crate) fn create(&self, head_reserve: u64) -> Result<Box<dyn NewObject>> {
        let Some(enc) = &self.encrypt else {
            let opts = CreateOptions {
                head_reserve,
                ..self.create.clone()
            };
            return self.loc.create(&self.name, &opts);
        };
        let inner = self.loc.create(&self.name, &self.create)?;
        crate::format::crypt::encrypting(inner, enc, head_reserve, &self.loc.object_path(&self.name))
    }
}

/// The current UTC time as (RFC 3339, compact file-name stamp, seconds since the epoch).
pub(crate) fn now_stamps() -> (String, String, u64) {
    stamps_of(time::OffsetDateTime::now_utc())
}

/// `now` as (RFC 3339, compact file-name stamp, seconds since the epoch).
fn stamps_of(now: time::OffsetDateTime) -> (String, String, u64) {
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
/// use litevault::{backup, BackupOptions, Context, Destination, NoProgress};
/// let opts = BackupOptions { destination: Destination::dir("/backups"), ..Default::default() };
/// let report = backup(&Context::new(), "app.db".as_ref(), &opts, &NoProgress)?;
/// println!("wrote {} ({} bytes)", report.archive.display(), report.archive_size);
/// # Ok::<(), litevault::Error>(())
/// ```
pub fn backup(
    ctx: &Context,
    source: &Path,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    backup_as(ctx, source, None, opts, progress)
}

/// [`backup`] of `source`, or of a private copy standing for another database (`copy_of`).
pub(crate) fn backup_as(
    ctx: &Context,
    source: &Path,
    copy_of: Option<&CopyOf>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    ctx.apply_priority();
    match backup_once(ctx, source, copy_of, opts, progress, None) {
        // A prune (here or on another host) removed or replaced the parent while the pages were
        // read: an incremental on it could never be restored, so it is made again, as a full
        // backup that says why.
        Err(Error::ParentGone { path, detail }) if opts.incremental() => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let reason = format!("its parent {name} {detail} while the incremental backup ran");
            backup_once(ctx, source, copy_of, opts, progress, Some(reason))
        }
        other => other,
    }
}

/// One backup; `full_because`: make it full (not incremental) for that reason.
fn backup_once(
    ctx: &Context,
    source: &Path,
    copy_of: Option<&CopyOf>,
    opts: &BackupOptions,
    progress: &dyn Progress,
    full_because: Option<String>,
) -> Result<BackupReport> {
    let started = Instant::now();
    if let Some(level) = opts.level {
        opts.compression.check_level(level)?;
    }
    crate::model::labels::check_all(&opts.labels)
        .map_err(|m| Error::InvalidOption(format!("--label: {m}")))?;
    if let Format::Sql(selection) = &opts.format {
        return backup_sql(ctx, source, opts, selection, progress);
    }
    if opts.incremental() {
        if opts.compression != Compression::Zstd {
            return Err(Error::InvalidOption(
                "--incremental needs zstd compression (the default)".into(),
            ));
        }
        if opts.method == Method::Vacuum {
            return Err(Error::InvalidOption(
                "--incremental copies pages; --method vacuum rewrites every page".into(),
            ));
        }
        if matches!(opts.destination, Destination::File { .. }) {
            return Err(Error::InvalidOption(
                "--incremental needs --dir: a chain lives in a location, under the database's name".into(),
            ));
        }
    }
    if opts.full_every() == Some(0) {
        return Err(Error::InvalidOption("--full-every must be at least 1".into()));
    }
    db::precheck(source)?;
    let source = std::path::absolute(source).map_err(|e| Error::io("resolve", source, e))?;
    // The included directories are walked once, when the snapshot is fixed ([`walk_included`]);
    // a symlink or special file there is refused then, before the archive is started.
    let (_, stamp, _) = now_stamps();

    let name = opts.name.clone().unwrap_or_else(|| location::name_of(&source));
    check_name(&name)?;
    let default_name = archive::default_file_name(&name, opts.tag(), &stamp, opts.compression);
    let mut target = Target::resolve(&source, opts, &default_name)?;
    let work_dir = target.work_dir.clone();
    // Leftovers of killed runs (temp snapshots, unfinished archives) go first.
    fsutil::sweep_leftovers(&work_dir);
    if let Some(dir) = target.loc.local_dir().filter(|d| *d != work_dir) {
        fsutil::sweep_leftovers(dir);
    }
    let mut clock = PhaseClock::new();
    // The parent is found before the snapshot starts: its lookups (and, without this machine's
    // record of its checksum, a read of it) must not hold the source's checkpoints back.
    let parent = opts.incremental().then(|| match &full_because {
        Some(reason) => Err(reason.clone()),
        None => crate::ops::chain::find_parent(ctx, target.loc.as_ref(), &name, opts.full_every()),
    });
    // The name's stamp is taken just before the snapshot, so that names order backups as their
    // snapshots are ordered (to the second; the manifest's `snapshot_at` orders within one).
    let (created_at, stamp, mtime) = copy_of.map_or_else(now_stamps, |c| stamps_of(c.at));
    if target.generated {
        target.name = archive::default_file_name(&name, opts.tag(), &stamp, opts.compression);
        if target.encrypt.is_some() {
            target.name.push_str(crate::format::crypt::EXTENSION);
        }
    }
    let live = snapshot::begin_live(&source, opts.method, !opts.no_checkpoint)?;
    let snapshot_at = live.as_ref().map(|_| match copy_of {
        Some(c) => {
            c.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        }
        None => crate::format::manifest::precise_now(),
    });

    // Only what cannot fit is refused up front: a temp copy of the database (when the snapshot
    // is not streamed) needs the database's size in the work directory. How large the archive
    // will be is not known before it is written; a full disk then fails cleanly (ENOSPC: the
    // temp file is removed, nothing is published).
    if live.is_none() {
        let source_size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(fsutil::sidecar(&source, "-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        fsutil::ensure_space(&work_dir, source_size)?;
    }

    // Everything the manifest says except what the snapshot and its checks tell.
    let base = Manifest {
        created_at,
        snapshot_at,
        source_journal_mode: "wal".into(),
        db_size: 0,
        ..run_manifest(
            "full",
            copy_of.map_or(source.as_path(), |c| c.source.as_path()),
            opts,
            DbInfo::from_header_bytes(&[0u8; 100], 0),
        )
    };
    let holders = live.as_ref().map(|l| l.holders());
    let job = Job {
        ctx,
        target: &target,
        opts,
        codec: Codec {
            compression: opts.compression,
            level: opts.level,
            threads: ctx.threads(),
        },
        mtime,
        progress,
    };
    let done = match live {
        Some(live) => backup_live(&job, live, base, parent, &mut clock)?,
        None => backup_copy(&job, &source, base, parent, &mut clock)?,
    };
    let Done {
        manifest,
        database_sha256,
        published,
        snapshot_ms,
        streamed,
        hash_table,
        vanished,
    } = done;
    // Checked again now that it is published: a prune that removed the parent in the instant
    // before the publication leaves a link that could never be restored; it is taken back.
    if let Err(e) = check_parent(ctx, &target, &manifest) {
        let _ = target.loc.delete(&published.name);
        return Err(e);
    }
    let (files, files_bytes) = files::totals(&manifest.files);
    clock.lap("fsync and rename");
    // The source's catch-up checkpoint ran beside the end of the backup; wait for it, so that
    // the application's next commit does not have to.
    let checkpoint = holders.and_then(|h| h.outcome());
    if manifest.page_hashes.is_some() {
        crate::ops::chain::remember(target.loc.as_ref(), &published.name, &published.sha256);
        if opts.encrypt.is_some() {
            // The next incremental reads its parent's page hashes from here, not the bucket.
            crate::ops::chain::remember_parent(
                target.loc.as_ref(),
                &name,
                &published,
                &manifest,
                &hash_table,
            );
        }
    }

    Ok(BackupReport {
        kind: manifest.kind.clone(),
        parent: manifest.parent.as_ref().map(|p| p.name.clone()),
        changed_pages: manifest.changed_pages,
        full_reason: manifest.full_reason.clone(),
        archive: published.path,
        source,
        archive_size: published.size,
        db_size: manifest.db_size,
        archive_sha256: published.sha256,
        database_sha256,
        duration_ms: started.elapsed().as_millis() as u64,
        snapshot_ms: snapshot_ms.unwrap_or(started.elapsed().as_millis() as u64),
        restarts: manifest.snapshot_restarts,
        method: opts.method,
        compression: opts.compression,
        tables: crate::sqlite::db::own_tables(&manifest.db.tables),
        other_tables: manifest.db.tables.len() - crate::sqlite::db::own_tables(&manifest.db.tables),
        rows: manifest.total_rows(),
        corrupt: manifest.corrupt,
        streamed,
        checkpoint,
        encrypted_to: opts.encrypt.as_ref().map(|e| e.describe()),
        phases: clock.into_phases(),
        files,
        files_bytes,
        files_vanished: vanished,
        labels: opts.labels.clone(),
    })
}

/// A manifest of `kind` for `db` saying who made it and how: this litevault and its SQLite,
/// the host, the source, the snapshot method and compression; its storage check passed
/// ("ok") until the checks say otherwise.
fn run_manifest(kind: &str, source: &Path, opts: &BackupOptions, db: DbInfo) -> Manifest {
    Manifest {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        source: source.to_string_lossy().into_owned(),
        host: host_name(),
        sqlite_version: rusqlite::version().into(),
        method: opts.method,
        compression: opts.compression,
        compression_level: opts.level.or(opts.compression.default_level()),
        quick_check: "ok".into(),
        labels: opts.labels.clone(),
        ..Manifest::new(kind, db)
    }
}

/// `backup --format sql`: dumps the database at `source` into a dump file.
fn backup_sql(
    ctx: &Context,
    source: &Path,
    opts: &BackupOptions,
    selection: &crate::format::dump::write::Selection,
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
    let (created_at, stamp, _) = now_stamps();
    if let Some(n) = &opts.name {
        check_name(n)?;
    }
    let target = Target::resolve(&source, opts, &sql_file_name(&source, opts, &stamp))?;
    let out_dir = target.work_dir.clone();
    fsutil::sweep_leftovers(&out_dir);
    let source_size = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(fsutil::sidecar(&source, "-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    // Only the snapshot's temp copy is checked up front; how large the dump will be is not
    // known before it is written (a full disk then fails cleanly: nothing is published).
    fsutil::ensure_space(&out_dir, source_size)?;

    let mut clock = crate::progress::PhaseClock::new();
    let snap = snapshot::take(&source, &out_dir, opts.method, opts.limits, progress)?;
    clock.lap("snapshot");
    let (mut info, problems, fk_violations) = inspect_snapshot(snap.path(), false, opts.check_fts)?;
    if !problems.is_empty() {
        return Err(Error::CorruptDatabase {
            path: source,
            detail: problems.join("; "),
        });
    }
    clock.lap("checks");
    let conn = db::open_private(snap.path(), false)?;
    let plan = crate::format::dump::write::plan(&conn, selection).map_err(Error::InvalidOption)?;
    let included: std::collections::HashSet<&str> = plan.included.iter().map(String::as_str).collect();
    info.tables.retain(|t| included.contains(t.name.as_str()));
    let db_size = info.page_count * info.page_size as u64;
    // A dump is text made to diff well: only its created_at line changes between two dumps of
    // one database, so it carries no sub-second stamp (`snapshot_at`).
    let manifest = Manifest {
        db_size,
        source_journal_mode: snap.stats.source_journal_mode.clone(),
        snapshot_restarts: snap.stats.restarts,
        foreign_key_violations: fk_violations,
        ..run_manifest("sql", &source, opts, info)
    };
    let out_path = target.loc.object_path(&target.name);
    let io_err = |e| Error::io("write dump", &out_path, e);
    let codec = Codec {
        compression: opts.compression,
        level: opts.level,
        threads: ctx.threads(),
    };
    let mut enc = archive::Encoder::new(target.create(0)?, &codec).map_err(io_err)?;
    let trailer =
        crate::format::dump::make::write_dump(&conn, &plan, &manifest, &created_at, &mut enc, progress)
            .map_err(io_err)?;
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
        database_sha256: Some(trailer.sha256),
        duration_ms: started.elapsed().as_millis() as u64,
        snapshot_ms,
        restarts: manifest.snapshot_restarts,
        method: opts.method,
        compression: opts.compression,
        tables: crate::sqlite::db::own_tables(&manifest.db.tables),
        other_tables: manifest.db.tables.len() - crate::sqlite::db::own_tables(&manifest.db.tables),
        rows: manifest.total_rows(),
        corrupt: false,
        streamed: false,
        checkpoint: None,
        encrypted_to: opts.encrypt.as_ref().map(|e| e.describe()),
        kind: "sql".into(),
        parent: None,
        changed_pages: None,
        full_reason: None,
        files: 0,
        files_bytes: 0,
        files_vanished: Vec::new(),
        labels: opts.labels.clone(),
        phases: {
            clock.lap("fsync and rename");
            clock.into_phases()
        },
    })
}

/// Fails with [`Error::ParentGone`] when `manifest` is an incremental's whose parent is no longer
/// in the location, or is another archive than the one it was made on (the SHA-256 of its
/// manifest differs). An encrypted parent that this machine cannot read is checked for
/// presence only.
fn check_parent(ctx: &Context, target: &Target, manifest: &Manifest) -> Result<()> {
    let Some(link) = &manifest.parent else {
        return Ok(());
    };
    let path = target.loc.object_path(&link.name);
    let gone = |detail: &str| {
        Err(Error::ParentGone {
            path: path.clone(),
            detail: detail.into(),
        })
    };
    match archive::read_manifest_and_sha256(&path, ctx.identities()) {
        Ok((_, sha)) if sha == link.manifest_sha256 => Ok(()),
        Ok(_) => gone("was replaced"),
        Err(Error::NotFound { .. }) => gone("vanished"),
        // Deleted while it was read, or encrypted to keys this machine lacks: the object
        // itself says whether it is there.
        Err(_) if target.loc.head(&link.name)?.is_none() => gone("vanished"),
        Err(Error::Crypt { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Walks the included directories (refusing a symlink or special file, and more entries than
/// a manifest can list). Called once the database's snapshot is fixed: every file that existed
/// before the snapshot's read transaction began (and still exists) is listed, so a committed
/// row never names a file written before its commit that the archive lacks.
fn walk_included(opts: &BackupOptions) -> Result<Vec<files::Walked>> {
    let walked = files::walk(opts.include())?;
    // Readers accept manifests up to MAX_MANIFEST: refuse what could not be read back.
    if !walked.is_empty()
        && serde_json::to_vec_pretty(&files::widest(&walked)).map_or(u64::MAX, |v| v.len() as u64)
            > archive::MAX_MANIFEST - (1 << 20)
    {
        return Err(too_many_files(walked.len()));
    }
    Ok(walked)
}

fn too_many_files(n: usize) -> Error {
    Error::InvalidOption(format!(
        "--include: {n} files and directories are more than one manifest can list (at most {} MiB of \
         JSON, about 60,000 entries); include fewer, or archive them first (e.g. one tar file per month)",
        archive::MAX_MANIFEST >> 20
    ))
}

/// Refuses a `--name` that cannot be part of an object name.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.chars().any(char::is_control) {
        return Err(Error::InvalidOption(format!(
            "{name:?} cannot name backups (no '/', no leading '.', not empty)"
        )));
    }
    Ok(())
}

/// The default name of a dump: `<name>[-tag]-<stamp>.sql.zst` (or `.sql.gz`, `.sql`).
fn sql_file_name(source: &Path, opts: &BackupOptions, stamp: &str) -> String {
    let stem = opts.name.clone().unwrap_or_else(|| location::name_of(source));
    let tag = opts.tag().map(|t| format!("-{t}")).unwrap_or_default();
    format!(
        "{stem}{tag}-{stamp}{}",
        crate::format::dump::extension(opts.compression)
    )
}

/// What the two ways of writing an archive hand back.
struct Done {
    manifest: Manifest,
    database_sha256: Option<String>,
    published: Published,
    /// Milliseconds of the temp-file snapshot; `None` when the source's read transaction
    /// lasted the whole backup.
    snapshot_ms: Option<u64>,
    streamed: bool,
    /// The encoded page-hash table (zstd archives; empty otherwise).
    hash_table: Vec<u8>,
    /// Files that vanished before they could be copied.
    vanished: Vec<String>,
}

/// Fills a file entry's content into the writer it is given.
type Fill<'a> = dyn FnMut(&mut dyn Write) -> std::io::Result<()> + 'a;

/// Appends one file entry to an archive, its content from a [`Fill`].
type AppendFile<'a> = dyn FnMut(&files::FileEntry, &mut Fill<'_>) -> Result<()> + 'a;

/// Copies the walked entries one at a time through a spool and appends each to an archive
/// whose manifest is written last; returns the entries as stored and the files that vanished.
fn append_files_one_by_one(
    walked: &[files::Walked],
    work_dir: &Path,
    append: &mut AppendFile<'_>,
    progress: &dyn Progress,
) -> Result<(Vec<files::FileEntry>, Vec<String>)> {
    let mut spool = files::Spool::new(work_dir);
    let mut stored = Vec::with_capacity(walked.len());
    let mut vanished = Vec::new();
    if !walked.is_empty() {
        progress.begin("files", None);
    }
    for w in walked {
        spool.clear()?;
        match files::copy_one(&mut spool, w)? {
            None => vanished.push(w.entry.path.clone()),
            Some((entry, held)) => {
                append(&entry, &mut |out| match &held {
                    Some(h) => spool.write_to(h, out),
                    None => Ok(()),
                })?;
                crate::progress::step(progress, entry.size)?;
                stored.push(entry);
            }
        }
    }
    if !walked.is_empty() {
        progress.end();
    }
    Ok((stored, vanished))
}

/// Appends the entries [`files::copy_all`] spooled to an archive whose manifest went first.
fn append_spooled<W: Write>(
    writer: &mut ArchiveWriter<W>,
    spool: &files::Spool,
    copied: &files::Copied,
    io_err: &dyn Fn(std::io::Error) -> Error,
) -> Result<()> {
    for (entry, held) in &copied.entries {
        writer.append_file(entry, io_err, &mut |out| match held {
            Some(h) => spool.write_to(h, out),
            None => Ok(()),
        })?;
    }
    Ok(())
}

/// The manifest's facts from a snapshot's checks.
struct Inspected {
    info: DbInfo,
    problems: Vec<String>,
    fk_violations: u64,
}

/// Completes `base` with a snapshot's size and checks, refusing a corrupt database unless
/// `allow_corrupt`, and serializes it.
fn finish_manifest(
    mut base: Manifest,
    source: &Path,
    db_size: u64,
    inspected: Inspected,
    allow_corrupt: bool,
) -> Result<(Manifest, Vec<u8>)> {
    let Inspected {
        info,
        problems,
        fk_violations,
    } = inspected;
    if !problems.is_empty() && !allow_corrupt {
        return Err(Error::CorruptDatabase {
            path: source.to_path_buf(),
            detail: problems.join("; "),
        });
    }
    base.db_size = db_size;
    base.corrupt = !problems.is_empty();
    base.quick_check = if problems.is_empty() {
        "ok".into()
    } else {
        cap_json_len(problems.join("; "), QUICK_CHECK_TEXT_MAX)
    };
    base.foreign_key_violations = fk_violations;
    base.db = info;
    base.validate().map_err(|r| Error::CorruptDatabase {
        path: source.to_path_buf(),
        detail: r,
    })?;
    let json = serde_json::to_vec_pretty(&base).expect("manifest serializes");
    if json.len() as u64 > archive::MAX_MANIFEST {
        return Err(too_many_files(base.files.len()));
    }
    Ok((base, json))
}

/// WAL growth (bytes) during a streamed backup after which the remaining pages are read into a
/// temp file at full speed, so that the source's read transaction, which holds its
/// checkpoints back, ends soon (see [`LiveSnapshot::write_pages`]).
const SPILL_AFTER_WAL_GROWTH: u64 = 64 << 20;

/// Longest `quick_check` text a manifest records (JSON-escaped), so that the space reserved
/// for a manifest written last has a bound.
const QUICK_CHECK_TEXT_MAX: usize = 4000;

/// `text` shortened (with "...") until its JSON form, quotes excluded, is at most `max` bytes.
fn cap_json_len(mut text: String, max: usize) -> String {
    let len = |t: &str| {
        serde_json::to_string(t)
            .map(|j| j.len() - 2)
            .unwrap_or(usize::MAX)
    };
    if len(&text) <= max {
        return text;
    }
    while len(&text) + 3 > max {
        text.pop();
    }
    text + "..."
}

/// What the two ways of writing an archive ([`backup_live`], [`backup_copy`]) are given
/// besides the snapshot.
#[derive(Clone, Copy)]
struct Job<'a> {
    ctx: &'a Context,
    target: &'a Target,
    opts: &'a BackupOptions,
    codec: Codec,
    /// The time every tar entry is stamped with.
    mtime: u64,
    progress: &'a dyn Progress,
}

/// Backs up a WAL database from one read transaction: pages go straight from the source into
/// the archive. With the snapshot's two extra connections and zstd, the checks run while the
/// pages stream, and the manifest, decided last, is written into the head of the archive
/// ([`archive::ZstdManifestLastWriter`]); otherwise the checks run first.
fn backup_live(
    job: &Job,
    mut live: LiveSnapshot,
    base: Manifest,
    parent: Option<std::result::Result<Parent, String>>,
    clock: &mut PhaseClock,
) -> Result<Done> {
    let &Job {
        ctx,
        target,
        opts,
        codec,
        mtime,
        progress,
    } = job;
    // The read transaction has begun: what the directories hold now covers every row's file.
    let walked = &walk_included(opts)?;
    let out_path = target.loc.object_path(&target.name);
    let io_err = |e| Error::io("write archive", &out_path, e);
    let spill_dir = target.work_dir.clone();
    let tmp_path = out_path.as_path();
    let db_size = live.db_size();
    let source = live.source().to_path_buf();
    let checkers = live.take_checkers();
    match (checkers, opts.compression) {
        (checkers, Compression::Zstd) => {
            // Without the two extra connections the checks run first, on the main one.
            let early = checkers.is_none().then(|| checks_on_main(&live));
            let mut bound = base.clone();
            bound.db = DbInfo::read_with_header(live.conn(), &source, live.page1(), false)?;
            bound.files = files::widest(walked);
            let reserve = manifest_reserve_for(bound, db_size, parent.as_ref());
            let mut writer = ZstdManifestLastWriter::new(target.create(reserve)?, &codec, mtime, reserve)
                .map_err(io_err)?;
            clock.lap("snapshot");
            let page1 = live.page1().to_vec();
            let pages = PageSource::Live {
                live: &live,
                out_path: tmp_path,
                spill_dir: &spill_dir,
            };
            let (body, inspected) = std::thread::scope(|s| {
                let holders = live.holders();
                let (source, page1) = (&source, &page1);
                let checks = checkers.map(|(btree_conn, info_conn)| {
                    s.spawn(move || {
                        let (checked, conns) =
                            run_live_checks(btree_conn, info_conn, source, page1, db_size, opts.check_fts);
                        // Closing both connections ends their read transactions.
                        holders.release_with(|| drop(conns));
                        checked
                    })
                });
                let body = write_zstd_body(
                    &mut writer,
                    &pages,
                    live.page_size(),
                    db_size,
                    parent,
                    &io_err,
                    progress,
                );
                let inspected = match (checks, early) {
                    (Some(c), _) => c.join().expect("check thread does not panic"),
                    (None, Some(i)) => i,
                    (None, None) => unreachable!("checks run early when there are no checkers"),
                };
                (body, inspected)
            });
            let body = body?;
            live.finish();
            clock.lap("pages and checks");
            // The files are read after the database's snapshot was fixed (and released), so
            // every file a committed row refers to, written before that commit, is there.
            let (stored, vanished) = append_files_one_by_one(
                walked,
                &spill_dir,
                &mut |e, fill| writer.append_file(e, &io_err, fill),
                progress,
            )?;
            if !walked.is_empty() {
                clock.lap("files");
            }
            let mut base = body.apply(base);
            base.files = stored;
            base.body_size = Some(writer.end_body().map_err(io_err)?);
            let (manifest, json) = finish_manifest(base, &source, db_size, inspected, opts.allow_corrupt)?;
            check_parent(ctx, target, &manifest)?;
            let (published, _) = writer.finish(&json, &io_err)?;
            clock.lap("finish archive");
            Ok(Done {
                manifest,
                database_sha256: body.snapshot_sha256,
                published,
                snapshot_ms: None,
                streamed: true,
                hash_table: body.table,
                vanished,
            })
        }
        (checkers, _) => {
            let inspected = match checkers {
                Some((btree_conn, info_conn)) => {
                    let (checked, conns) = run_live_checks(
                        btree_conn,
                        info_conn,
                        &source,
                        live.page1(),
                        db_size,
                        opts.check_fts,
                    );
                    live.holders().release_with(|| drop(conns));
                    checked
                }
                None => checks_on_main(&live),
            };
            clock.lap("snapshot checks");
            // This manifest goes first: every file is spooled before it (the snapshot, fixed
            // already, waits meanwhile).
            let mut spool = files::Spool::new(&spill_dir);
            let copied = files::copy_all(&mut spool, walked)?;
            let mut base = base;
            base.files = copied.entries.iter().map(|(e, _)| e.clone()).collect();
            let (manifest, json) = finish_manifest(base, &source, db_size, inspected, opts.allow_corrupt)?;
            let mut writer = ArchiveWriter::new(target.create(0)?, &codec, mtime).map_err(io_err)?;
            writer.append_bytes(MANIFEST_ENTRY, &json).map_err(io_err)?;
            progress.begin("compress", Some(db_size));
            let database_sha256 = writer.append_with(DATABASE_ENTRY, db_size, &io_err, |w| {
                live.write_pages(w, tmp_path, &spill_dir, SPILL_AFTER_WAL_GROWTH, progress)
            })?;
            progress.end();
            live.finish();
            append_spooled(&mut writer, &spool, &copied, &io_err)?;
            let written = writer.finish().map_err(io_err)?;
            let published = written.inner.finish(None)?;
            clock.lap("pages");
            Ok(Done {
                manifest,
                database_sha256: Some(database_sha256),
                published,
                snapshot_ms: None,
                streamed: true,
                hash_table: Vec::new(),
                vanished: copied.vanished,
            })
        }
    }
}

/// The checks of a live snapshot on its two extra connections, in two threads: the b-tree part
/// of `quick_check` and the foreign-key check on one (its virtual-table modules dropped), the
/// header state, row counts and the virtual tables' part of `quick_check` (FTS indexes) on the
/// other. Together that is SQLite's whole `quick_check`; without `check_fts` the virtual tables'
/// part is left out.
fn run_live_checks(
    btree_conn: Connection,
    info_conn: Connection,
    source: &Path,
    page1: &[u8],
    db_size: u64,
    check_fts: bool,
) -> (Inspected, [Connection; 2]) {
    type Part = rusqlite::Result<(Vec<String>, u64)>;
    std::thread::scope(|s| {
        let btree = s.spawn(move || -> (Part, Connection) {
            let part = (|| {
                db::drop_vtab_modules(&btree_conn)?;
                let problems = db::classified_problems(&btree_conn, false, 10)?;
                Ok((problems, db::foreign_key_violations(&btree_conn).unwrap_or(0)))
            })();
            (part, btree_conn)
        });
        let info = DbInfo::read_with_header(&info_conn, source, page1, true);
        let vtabs = if check_fts {
            db::vtab_problems(&info_conn, false, 10, &[])
        } else {
            Ok(Vec::new())
        };
        let (part, btree_conn) = btree.join().expect("check thread does not panic");
        let (problems, fk_violations) = match (part, vtabs) {
            (Ok((mut problems, fk)), Ok(vtabs)) => {
                problems.extend(vtabs.into_iter().flat_map(|(_, p)| p));
                (problems, fk)
            }
            (Err(e), _) | (_, Err(e)) => (vec![e.to_string()], 0),
        };
        (
            inspected(info, problems, fk_violations, page1, db_size),
            [btree_conn, info_conn],
        )
    })
}

/// The checks of a live snapshot on its main connection alone (SQLite's whole `quick_check`).
fn checks_on_main(live: &LiveSnapshot) -> Inspected {
    let info = live.info();
    let problems = db::classified_problems(live.conn(), false, 10).unwrap_or_else(|e| vec![e.to_string()]);
    let fk = db::foreign_key_violations(live.conn()).unwrap_or(0);
    inspected(info, problems, fk, live.page1(), live.db_size())
}

fn inspected(
    info: Result<DbInfo>,
    problems: Vec<String>,
    fk_violations: u64,
    page1: &[u8],
    db_size: u64,
) -> Inspected {
    match info {
        Ok(info) if problems.is_empty() => Inspected {
            info,
            problems,
            fk_violations,
        },
        // A database whose checks fail (or whose tables cannot be read) is described from its
        // header; its foreign-key count means nothing.
        Ok(_) => Inspected {
            info: DbInfo::from_header_bytes(page1, db_size),
            problems,
            fk_violations: 0,
        },
        Err(e) => {
            let mut problems = problems;
            if problems.is_empty() {
                problems.push(e.to_string());
            }
            Inspected {
                info: DbInfo::from_header_bytes(page1, db_size),
                problems,
                fk_violations: 0,
            }
        }
    }
}

/// Backs up through a private temp copy ([`snapshot::take`]): rollback-journal sources,
/// `--method vacuum`, and SQLite builds without `sqlite_dbpage`.
fn backup_copy(
    job: &Job,
    source: &Path,
    mut base: Manifest,
    parent: Option<std::result::Result<Parent, String>>,
    clock: &mut PhaseClock,
) -> Result<Done> {
    let &Job {
        ctx,
        target,
        opts,
        codec,
        mtime,
        progress,
    } = job;
    let out_path = target.loc.object_path(&target.name);
    let io_err = |e| Error::io("write archive", &out_path, e);
    let snap = snapshot::take(source, &target.work_dir, opts.method, opts.limits, progress)?;
    base.snapshot_at = Some(crate::format::manifest::precise_now());
    // The copy is done: what the directories hold now covers every row's file.
    let walked = &walk_included(opts)?;
    clock.lap("snapshot copy");
    let (info, problems, fk_violations) = inspect_snapshot(snap.path(), opts.allow_corrupt, opts.check_fts)?;
    clock.lap("snapshot checks");
    let db_size = std::fs::metadata(snap.path())
        .map_err(|e| Error::io("stat", snap.path(), e))?
        .len();
    base.source_journal_mode = snap.stats.source_journal_mode.clone();
    base.snapshot_restarts = snap.stats.restarts;
    let inspected = Inspected {
        info,
        problems,
        fk_violations,
    };
    if opts.compression == Compression::Zstd {
        let page_size = inspected.info.page_size;
        let mut bound = base.clone();
        bound.db = inspected.info.clone();
        bound.files = files::widest(walked);
        let reserve = manifest_reserve_for(bound, db_size, parent.as_ref());
        let mut writer =
            ZstdManifestLastWriter::new(target.create(reserve)?, &codec, mtime, reserve).map_err(io_err)?;
        let pages = PageSource::File(snap.path());
        let body = write_zstd_body(&mut writer, &pages, page_size, db_size, parent, &io_err, progress)?;
        let (stored, vanished) = append_files_one_by_one(
            walked,
            &target.work_dir,
            &mut |e, fill| writer.append_file(e, &io_err, fill),
            progress,
        )?;
        let mut base = body.apply(base);
        base.files = stored;
        base.body_size = Some(writer.end_body().map_err(io_err)?);
        let (manifest, json) = finish_manifest(base, source, db_size, inspected, opts.allow_corrupt)?;
        check_parent(ctx, target, &manifest)?;
        let (published, _) = writer.finish(&json, &io_err)?;
        clock.lap("archive");
        return Ok(Done {
            manifest,
            database_sha256: body.snapshot_sha256,
            published,
            snapshot_ms: Some(snap.stats.duration_ms),
            streamed: false,
            hash_table: body.table,
            vanished,
        });
    }
    let mut spool = files::Spool::new(&target.work_dir);
    let copied = files::copy_all(&mut spool, walked)?;
    let mut base = base;
    base.files = copied.entries.iter().map(|(e, _)| e.clone()).collect();
    let (manifest, json) = finish_manifest(base, source, db_size, inspected, opts.allow_corrupt)?;
    let mut writer = ArchiveWriter::new(target.create(0)?, &codec, mtime).map_err(io_err)?;
    writer.append_bytes(MANIFEST_ENTRY, &json).map_err(io_err)?;
    let snap_file = std::fs::File::open(snap.path()).map_err(|e| Error::io("open", snap.path(), e))?;
    progress.begin("compress", Some(db_size));
    let database_sha256 = writer
        .append_stream(DATABASE_ENTRY, db_size, snap_file, progress)
        .map_err(io_err)?;
    progress.end();
    append_spooled(&mut writer, &spool, &copied, &io_err)?;
    let written = writer.finish().map_err(io_err)?;
    let published = written.inner.finish(None)?;
    clock.lap("archive");
    Ok(Done {
        manifest,
        database_sha256: Some(database_sha256),
        published,
        snapshot_ms: Some(snap.stats.duration_ms),
        streamed: false,
        hash_table: Vec::new(),
        vanished: copied.vanished,
    })
}

/// Bytes to reserve for the manifest of a zstd archive: the largest manifest these tables can
/// give, every count and number at its widest, chain fields included.
fn manifest_reserve_for(
    mut bound: Manifest,
    db_size: u64,
    parent: Option<&std::result::Result<Parent, String>>,
) -> u64 {
    for t in &mut bound.db.tables {
        t.rows = Some(u64::MAX);
    }
    bound.db_size = db_size;
    bound.foreign_key_violations = u64::MAX;
    bound.quick_check = "x".repeat(QUICK_CHECK_TEXT_MAX);
    bound.kind = "incremental".into();
    bound.snapshot_sha256 = Some("0".repeat(64));
    bound.page_hashes = Some(crate::sqlite::pageset::PageHashes {
        algorithm: crate::sqlite::pageset::ALGORITHM.into(),
        key: "0".repeat(2 * crate::sqlite::pageset::KEY_LEN),
        count: u64::MAX,
        sha256: "0".repeat(64),
        frame: Some((u64::MAX, u64::MAX)),
    });
    let parent_name = match parent {
        Some(Ok(p)) => p.link.name.clone(),
        _ => "x".repeat(1024),
    };
    bound.parent = Some(crate::format::manifest::ParentLink {
        name: parent_name,
        archive_sha256: "0".repeat(64),
        manifest_sha256: "0".repeat(64),
        created_at: "x".repeat(40),
    });
    bound.chain_depth = u32::MAX;
    bound.body_size = Some(u64::MAX);
    bound.changed_pages = Some(u64::MAX);
    bound.full_reason = Some("x".repeat(FULL_REASON_MAX + 64));
    let len = serde_json::to_vec_pretty(&bound)
        .map(|v| v.len())
        .unwrap_or(1 << 20);
    archive::manifest_reserve(len)
}

/// Longest reason for a full backup a manifest records.
const FULL_REASON_MAX: usize = 400;

/// Where a zstd archive's pages come from.
enum PageSource<'a> {
    /// A live snapshot's read transaction.
    Live {
        live: &'a LiveSnapshot,
        out_path: &'a Path,
        spill_dir: &'a Path,
    },
    /// A private temp copy.
    File(&'a Path),
}

impl PageSource<'_> {
    /// Every page in order into `out`; with `again`, the snapshot stays readable for another
    /// pass.
    fn stream(&self, out: &mut dyn Write, again: bool, progress: &dyn Progress) -> Result<()> {
        match self {
            PageSource::Live {
                live,
                out_path,
                spill_dir,
            } => {
                let spill = if again { u64::MAX } else { SPILL_AFTER_WAL_GROWTH };
                live.write_pages_then(out, out_path, spill_dir, spill, progress, !again)
            }
            PageSource::File(p) => {
                let mut f = std::fs::File::open(p).map_err(|e| Error::io("open", p, e))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::io("read", p, e))?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buf[..n])
                        .map_err(|e| Error::io("write archive", p, e))?;
                    crate::progress::step(progress, n as u64)?;
                }
            }
        }
    }
}

/// What [`write_zstd_body`] wrote.
struct Body {
    /// None for an incremental (its page-hash table identifies it).
    snapshot_sha256: Option<String>,
    page_hashes: crate::sqlite::pageset::PageHashes,
    incremental: Option<(crate::format::manifest::ParentLink, u32, u64)>,
    full_reason: Option<String>,
    table: Vec<u8>,
}

impl Body {
    /// `base` with this body's chain fields.
    fn apply(&self, mut base: Manifest) -> Manifest {
        base.format = match self.snapshot_sha256 {
            Some(_) => crate::format::manifest::FORMAT_PAGES.into(),
            None => crate::format::manifest::FORMAT_PAGE_TABLE.into(),
        };
        base.snapshot_sha256 = self.snapshot_sha256.clone();
        base.page_hashes = Some(self.page_hashes.clone());
        base.full_reason = self.full_reason.clone();
        if let Some((link, depth, changed)) = &self.incremental {
            base.kind = "incremental".into();
            base.parent = Some(link.clone());
            base.chain_depth = *depth;
            base.changed_pages = Some(*changed);
        }
        base
    }
}

/// Writes the data entry (the whole database, or for an incremental backup the pages that
/// differ from the parent's) and the page-hash table in its own frame.
fn write_zstd_body(
    writer: &mut ZstdManifestLastWriter,
    pages: &PageSource,
    page_size: u32,
    db_size: u64,
    parent: Option<std::result::Result<Parent, String>>,
    io_err: &dyn Fn(std::io::Error) -> Error,
    progress: &dyn Progress,
) -> Result<Body> {
    use crate::sqlite::pageset::PageHasher;
    let page_count = db_size / page_size as u64;
    let mut full_reason = None;
    let mut parent = match parent {
        None => None,
        Some(Ok(p)) if p.page_size != page_size => {
            full_reason = Some(format!(
                "the page size changed ({} -> {page_size}) since {}",
                p.page_size, p.link.name
            ));
            None
        }
        Some(Ok(p)) => Some(p),
        Some(Err(why)) => {
            full_reason = Some(why);
            None
        }
    };
    let key = match &parent {
        Some(p) => p.key,
        None => crate::sqlite::pageset::new_key().map_err(io_err)?,
    };
    let mut incremental = None;
    let mut hashes = None;
    let mut snapshot_sha256 = None;
    if let Some(p) = parent.take() {
        progress.begin("compare pages", Some(db_size));
        let mut hasher = PageHasher::new(std::io::sink(), key, page_size, Some(p.hashes)).map_err(io_err)?;
        pages.stream(&mut hasher, true, progress)?;
        progress.end();
        let done = hasher.finish().map_err(io_err)?;
        if done.changed_count * 2 > page_count {
            full_reason = Some(format!(
                "{} of {page_count} pages changed since {} (a VACUUM?)",
                done.changed_count, p.link.name
            ));
        } else if let Some(mut changed) = done.changed {
            let size = done.changed_count * (4 + page_size as u64);
            progress.begin("compress", Some(size));
            writer.append_entry(crate::sqlite::pageset::PAGES_ENTRY, size, io_err, |w| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = std::io::Read::read(&mut changed, &mut buf).map_err(io_err)?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.write_all(&buf[..n]).map_err(io_err)?;
                    crate::progress::step_io(progress, n as u64).map_err(io_err)?;
                }
            })?;
            progress.end();
            // The snapshot is no longer needed: let the source's checkpoints go on.
            if let PageSource::Live { live, .. } = pages {
                live.release_main();
            }
            incremental = Some((p.link.clone(), p.depth.saturating_add(1), done.changed_count));
            hashes = Some(done.hashes);
        }
    }
    if incremental.is_none() {
        progress.begin("compress", Some(db_size));
        let mut table = None;
        let sum = writer.append_database(db_size, io_err, |w| {
            let mut hasher = PageHasher::new(w, key, page_size, None).map_err(io_err)?;
            pages.stream(&mut hasher, false, progress)?;
            table = Some(hasher.finish().map_err(io_err)?.hashes);
            Ok(())
        })?;
        progress.end();
        hashes = table;
        snapshot_sha256 = Some(sum);
    }
    let hashes = hashes.unwrap_or_default();
    if hashes.len() as u64 != page_count {
        return Err(io_err(std::io::Error::other(format!(
            "{} pages hashed of {page_count}",
            hashes.len()
        ))));
    }
    let table = crate::sqlite::pageset::encode(&hashes);
    let frame = writer
        .append_framed(crate::sqlite::pageset::HASHES_ENTRY, &table)
        .map_err(io_err)?;
    Ok(Body {
        snapshot_sha256,
        page_hashes: crate::sqlite::pageset::PageHashes {
            algorithm: crate::sqlite::pageset::ALGORITHM.into(),
            key: hex(&key),
            count: page_count,
            sha256: hex(&<sha2::Sha256 as sha2::Digest>::digest(&table)),
            frame: Some(frame),
        },
        incremental,
        full_reason: full_reason.map(|r| cap_json_len(r, FULL_REASON_MAX)),
        table,
    })
}

/// Reads header state, row counts, `quick_check` problems and foreign-key violations of a
/// snapshot (the full-text indexes' own part of `quick_check` only with `check_fts`). With
/// `allow_corrupt`, a snapshot whose schema cannot be read is described from its header alone
/// instead of failing.
pub(crate) fn inspect_snapshot(
    path: &Path,
    allow_corrupt: bool,
    check_fts: bool,
) -> Result<(DbInfo, Vec<String>, u64)> {
    let conn = match db::open_private(path, false) {
        Ok(c) => c,
        Err(Error::CorruptDatabase { detail, .. }) | Err(Error::NotADatabase { reason: detail, .. })
            if allow_corrupt =>
        {
            return Ok((DbInfo::from_header(path)?, vec![detail], 0));
        }
        Err(e) => return Err(e),
    };
    let problems: std::result::Result<Vec<String>, String> = if check_fts {
        db::classified_problems(&conn, false, 10).map_err(|e| e.to_string())
    } else {
        // The b-trees on a second connection without virtual-table modules.
        db::open_private(path, false)
            .map_err(|e| e.to_string())
            .and_then(|btree| {
                db::drop_vtab_modules(&btree)
                    .and_then(|()| db::classified_problems(&btree, false, 10))
                    .map_err(|e| e.to_string())
            })
    };
    let problems = problems.unwrap_or_else(|e| vec![e]);
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
