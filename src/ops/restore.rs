//! `restore`: put an archive's database in place without ever losing data by accident.
//!
//! [`plan_restore`] decides everything first and changes nothing (it is what `--dry-run`
//! prints): it refuses an existing target without `overwrite`, an archive with a newer schema
//! without `allow_newer_schema`, and a swap under a process that holds the target; it checks free
//! space. [`restore`] then follows the plan:
//!
//! 1. extract the database into a hidden temp file beside the target, checking every checksum;
//! 2. check the extracted file against its manifest and with SQLite's integrity checks — nothing
//!    is touched if any check fails (the failure says what kind of problem it is, see
//!    [`crate::sqlite::findings`]); with `reindex`, indexes are first rebuilt in the extracted copy
//!    (every one, or those the checks dispute, after which the checks run again);
//! 3. when a database is replaced, back it up first into a safety archive;
//! 4. put the new content in place by one of three strategies ([`Strategy`]):
//!    - `create` (no target): fsync, rename without replacing, fsync the directory;
//!    - `live` (the target is an SQLite database): copy through SQLite's backup API into the
//!      target, so processes that have it open see the new content on their next transaction
//!      and a crash leaves it wholly old or wholly new (SQLite's journal or WAL protects it);
//!    - `swap` (the target is not a readable database, or it is a WAL database with another page
//!      size, which SQLite cannot copy into): only when no process holds it, the old file kept
//!      under a new name, then an atomic rename.
//!
//! Stale `-wal`/`-shm`/`-journal` files are never applied to new content: a `live` restore goes
//! through SQLite, which owns them; otherwise they are moved aside before the rename.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::dump::Content;
use crate::format::manifest::Manifest;
use crate::fsutil::{self, AtomicFile};
use crate::ops::backup::{self, BackupOptions, Destination};
use crate::ops::verify;
use crate::ops::Context;
use crate::progress::{NoProgress, Phase, PhaseClock, Progress};
use crate::sqlite::db::{self, Check, Reindex};

/// Options of [`restore`] and [`plan_restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Replace an existing database (a safety archive of it is kept first).
    pub overwrite: bool,
    /// Restore an archive whose `user_version` is newer than the target's.
    pub allow_newer_schema: bool,
    /// Run `quick_check` instead of `integrity_check` before the swap.
    pub quick: bool,
    /// Rebuild indexes in the extracted copy before (or, for the disputed ones, between) its
    /// checks: for an archive whose indexes disagree with their tables under this SQLite
    /// (e.g. written by an older one) while every row is intact.
    pub reindex: Reindex,
    /// Where the safety archive goes (default: the backup directory).
    pub safety_dir: Option<PathBuf>,
    /// How long to wait for other connections' locks on a live target.
    pub busy_timeout: Duration,
    /// Encrypt the safety archive (age). Without it the safety archive is stored in clear,
    /// which the plan warns about for an encrypted archive and refuses into a bucket.
    pub encrypt: Option<crate::format::crypt::Encryption>,
    /// Put the archive's files (`backup --include`) under this directory, as
    /// `<dir>/<included dir's name>/...`, once the database has passed its checks; an existing
    /// file there is replaced only with `overwrite`. Without it, the files are not restored
    /// (the plan says how many).
    pub files_to: Option<PathBuf>,
    /// Replicated transactions to replay onto the archive (a replication stream's base)
    /// before the checks: the restore gives back the state after the point's transaction.
    pub replay: Option<crate::ops::replica::Replay>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            overwrite: false,
            allow_newer_schema: false,
            quick: false,
            reindex: Reindex::No,
            safety_dir: None,
            busy_timeout: Duration::from_secs(30),
            encrypt: None,
            files_to: None,
            replay: None,
        }
    }
}

/// How the new content is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The target does not exist: atomic rename of the verified file.
    Create,
    /// The target is a database: copy into it through SQLite (safe with live connections).
    Live,
    /// The target cannot take a copy through SQLite and nobody holds it: keep the old file
    /// under another name and rename the verified file into place.
    Swap,
}

/// The state of the database a restore would replace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetState {
    /// Bytes of the database file (without `-wal`).
    pub size: u64,
    /// Whether SQLite can read it.
    pub is_database: bool,
    /// Its `user_version`, when readable.
    pub user_version: Option<i64>,
    /// Its page size, when readable.
    pub page_size: Option<u32>,
    /// Its journal mode, when readable.
    pub journal_mode: Option<String>,
    /// Locks other processes hold on it, when seen (advisory).
    pub in_use: Option<String>,
}

/// Everything a restore would do; what `--dry-run` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The archive to restore.
    pub archive: PathBuf,
    /// The database to create or replace (absolute).
    pub target: PathBuf,
    /// The archive's manifest.
    pub manifest: Manifest,
    /// How the content will be put in place.
    pub strategy: Strategy,
    /// What is there now, if anything.
    pub replaces: Option<TargetState>,
    /// Where the safety archive of the replaced database will go.
    pub safety_dir: Option<PathBuf>,
    /// Who can read the safety archive, when it is encrypted ("1 recipient", "a passphrase").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_encrypted_to: Option<String>,
    /// Left-over `-wal`/`-shm`/`-journal` files of a missing target, to be moved aside.
    pub stale_files: Vec<PathBuf>,
    /// Checks that run before anything is swapped.
    pub checks: Vec<String>,
    /// Bytes the restore writes: the database (twice for a live copy, with SQLite's journal or
    /// WAL) and, with `--files-to`, the files beside it.
    pub space_needed: u64,
    /// Bytes free there.
    pub space_available: u64,
    /// Things worth knowing that do not stop the restore.
    pub warnings: Vec<String>,
    /// What `files_to` will write (none without it).
    pub files: Option<crate::format::files::FilesPlan>,
    /// Entries of the archive's files that this restore leaves alone (no `files_to`).
    pub files_not_restored: u64,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The plan that was carried out.
    pub plan: RestorePlan,
    /// True when the new content is in place.
    pub restored: bool,
    /// Checks run before (and after) the swap.
    pub checks: Vec<Check>,
    /// The safety archive of the replaced database.
    pub safety_archive: Option<PathBuf>,
    /// Files moved aside (kept, never deleted): the replaced file for `swap`, stale side files.
    pub moved_aside: Vec<PathBuf>,
    /// The indexes rebuilt in the restored copy (`reindex`), in name order.
    pub reindexed: Vec<String>,
    /// Milliseconds the restore took.
    pub duration_ms: u64,
    /// Wall time of each phase, in order.
    pub phases: Vec<Phase>,
    /// Entries (files, directories, symlinks) put in place under `files_to`.
    pub files_restored: u64,
    /// The replicated transactions replayed onto the archive, when there were some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<crate::ops::replica::Replayed>,
}

/// Whether `path` is a local file that starts with SQLite's header.
fn is_sqlite_file(path: &Path) -> bool {
    use std::io::Read;
    if crate::location::is_remote(path) {
        return false;
    }
    let mut head = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head == b"SQLite format 3\0"
}

/// Whether `path` holds a litevault archive or dump (clear or encrypted), by its content.
fn is_backup_file(ctx: &Context, path: &Path) -> bool {
    crate::format::crypt::is_encrypted_file(path)
        || matches!(
            crate::format::dump::open(path, ctx.identities()),
            Ok((
                _,
                crate::format::dump::Content::Archive | crate::format::dump::Content::LitevaultDump,
                _
            ))
        )
}

/// Works out what restoring `archive` to `target` would do, refusing what is unsafe. Changes
/// nothing.
pub fn plan_restore(
    ctx: &Context,
    archive: &Path,
    target: &Path,
    opts: &RestoreOptions,
) -> Result<RestorePlan> {
    let (content, manifest) = read_backup(ctx, archive, opts)?;
    let (target, dir) = resolve_target(ctx, archive, target)?;
    let mut warnings = Vec::new();
    let (files, files_not_restored) = plan_files(archive, &manifest, opts, &mut warnings)?;
    let exists = target.exists();
    let (strategy, replaces, stale_files) = choose_strategy(&target, &manifest, opts, &mut warnings)?;
    let (space_needed, space_available) = check_space(&dir, &manifest, strategy, files.as_ref())?;
    let safety_dir = exists.then(|| opts.safety_dir.clone().unwrap_or_else(backup::default_backup_dir));
    if let (Some(dir), None) = (&safety_dir, &opts.encrypt) {
        refuse_clear_safety(archive, dir, &mut warnings)?;
    }
    let checks = planned_checks(content, &manifest, opts, files.as_ref(), &mut warnings);
    if manifest.corrupt {
        warnings
            .push("the archive is marked corrupt (made with --allow-corrupt): its checks will fail".into());
    }
    Ok(RestorePlan {
        archive: archive.to_path_buf(),
        target,
        manifest,
        strategy,
        replaces,
        safety_encrypted_to: safety_dir
            .as_ref()
            .and(opts.encrypt.as_ref())
            .map(|e| e.describe()),
        safety_dir,
        stale_files,
        checks,
        space_needed,
        space_available,
        warnings,
        files,
        files_not_restored,
    })
}

/// Reads what `archive` is (refusing a database given in its place, and text that is not SQL).
fn read_backup(ctx: &Context, archive: &Path, opts: &RestoreOptions) -> Result<(Content, Manifest)> {
    if opts.quick && opts.reindex == Reindex::Disputed {
        return Err(Error::InvalidOption(verify::QUICK_DISPUTED.into()));
    }
    if is_sqlite_file(archive) {
        return Err(Error::InvalidOption(format!(
            "{} is an SQLite database, not a backup: to restore it, back it up first \
             (`litevault backup {}`) and restore that archive, or copy the file",
            archive.display(),
            archive.display()
        )));
    }
    let (content, manifest) = crate::format::dump::read_any_manifest(archive, ctx.identities())?;
    if content == crate::format::dump::Content::ForeignDump {
        let (_, _, mut reader) = crate::format::dump::open(archive, ctx.identities())?;
        if !crate::format::dump::begins_with_sql_statement(&mut reader) {
            return Err(Error::InvalidOption(format!(
                "{}: not a backup: neither a litevault archive nor an SQL dump (it starts with text \
                 that is not SQL)",
                archive.display()
            )));
        }
    }
    Ok((content, manifest))
}

/// The absolute target and its directory, refusing a backup given in its place, a missing
/// directory and a directory as the target.
fn resolve_target(ctx: &Context, archive: &Path, target: &Path) -> Result<(PathBuf, PathBuf)> {
    let target = std::path::absolute(target).map_err(|e| Error::io("resolve", target, e))?;
    if target.is_file() && !is_sqlite_file(&target) && is_backup_file(ctx, &target) {
        return Err(Error::InvalidOption(format!(
            "{} is a litevault backup, not a database: the second argument is the database to \
             restore into (e.g. `litevault restore {} app.db`)",
            target.display(),
            archive.display()
        )));
    }
    let dir = fsutil::parent_dir(&target);
    if !dir.is_dir() {
        return Err(Error::NotFound { path: dir });
    }
    if target.is_dir() {
        return Err(Error::InvalidOption(format!(
            "{} is a directory",
            target.display()
        )));
    }
    Ok((target, dir))
}

/// What `files_to` will write (every refusal found now, before anything is written), and how
/// many entries stay in the archive without it.
fn plan_files(
    archive: &Path,
    manifest: &Manifest,
    opts: &RestoreOptions,
    warnings: &mut Vec<String>,
) -> Result<(Option<crate::format::files::FilesPlan>, u64)> {
    // The files beside the database: every refusal (a path through a symlink, a file in the
    // way) is found here, before anything is written.
    let (file_count, file_bytes) = crate::format::files::totals(&manifest.files);
    let mut files_not_restored = 0;
    let files = match &opts.files_to {
        Some(_) if manifest.files.is_empty() => {
            return Err(Error::InvalidOption(format!(
                "--files-to: {} holds no files (it was made without --include)",
                archive.display()
            )))
        }
        Some(out) => Some(crate::format::files::plan_files(
            &manifest.files,
            out,
            opts.overwrite,
        )?),
        None if file_count > 0 => {
            files_not_restored = file_count;
            warnings.push(format!(
                "the archive holds {file_count} files and directories ({file_bytes} bytes) beside the \
                 database; they are not restored without --files-to DIR (e.g. `litevault restore ARCHIVE \
                 scratch.db --files-to DIR` restores them alone)"
            ));
            None
        }
        None => None,
    };
    Ok((files, files_not_restored))
}

/// How the target will be replaced (or created), what it is now, and the stale side files of a
/// missing database to move aside; refuses what would lose data.
fn choose_strategy(
    target: &Path,
    manifest: &Manifest,
    opts: &RestoreOptions,
    warnings: &mut Vec<String>,
) -> Result<(Strategy, Option<TargetState>, Vec<PathBuf>)> {
    let sidecars = fsutil::existing_sidecars(target);
    let exists = target.exists();
    let mut stale_files = Vec::new();
    let (strategy, replaces) = if exists {
        if !opts.overwrite {
            return Err(Error::WouldOverwrite {
                path: target.to_path_buf(),
            });
        }
        let state = inspect_target(target)?;
        let strategy = if !state.is_database {
            warnings.push(format!(
                "{} is not a readable SQLite database; it will be kept, with its side files, under a \
                 new name beside the new one",
                target.display()
            ));
            Strategy::Swap
        } else if state.journal_mode.as_deref() == Some("wal")
            && state.page_size != Some(manifest.db.page_size)
        {
            Strategy::Swap
        } else {
            Strategy::Live
        };
        if strategy == Strategy::Swap {
            if let Some(holders) = &state.in_use {
                return Err(Error::InUse {
                    path: target.to_path_buf(),
                    detail: format!(
                        "{holders}; its content can only be replaced by swapping the file{}, which would \
                         pull it from under that process",
                        if state.is_database {
                            " (its page size differs from the archive's in WAL mode)"
                        } else {
                            ""
                        }
                    ),
                });
            }
        }
        if let Some(current) = state.user_version {
            let incoming = manifest.db.user_version;
            if incoming > current && !opts.allow_newer_schema {
                return Err(Error::NewerSchema {
                    path: target.to_path_buf(),
                    archive: incoming,
                    target: current,
                });
            }
            if incoming > current {
                warnings.push(format!(
                    "schema version goes up from {current} to {incoming} (allowed)"
                ));
            }
            if incoming < current {
                warnings.push(format!(
                    "the archive's schema version {incoming} is older than the database's {current}: the \
                     application may need to migrate it again"
                ));
            }
        }
        if state.in_use.is_some() && strategy == Strategy::Live {
            warnings.push(
                "the database is open in another process: its connections will see the restored content \
                 on their next transaction"
                    .into(),
            );
        }
        (strategy, Some(state))
    } else {
        if !sidecars.is_empty() {
            if !opts.overwrite {
                return Err(Error::WouldOverwrite {
                    path: sidecars[0].clone(),
                });
            }
            // A database deleted under a running application leaves its live -wal/-shm: moving
            // those would lose the application's later writes.
            if let Some(holders) = fsutil::lock_holders(target) {
                return Err(Error::InUse {
                    path: sidecars[0].clone(),
                    detail: holders,
                });
            }
            warnings.push("left-over -wal/-shm/-journal files without a database will be moved aside".into());
            stale_files = sidecars;
        }
        (Strategy::Create, None)
    };

    Ok((strategy, replaces, stale_files))
}

/// The space the restore needs and the space free in the target's directory (the files'
/// directory checked too); refuses what cannot fit.
fn check_space(
    dir: &Path,
    manifest: &Manifest,
    strategy: Strategy,
    files: Option<&crate::format::files::FilesPlan>,
) -> Result<(u64, u64)> {
    // The extracted copy, plus SQLite's journal or WAL for a live copy (about the database size).
    let space_needed = manifest
        .db_size
        .saturating_mul(if strategy == Strategy::Live { 2 } else { 1 });
    let space_available = fsutil::free_space(dir)?;
    if space_available < space_needed {
        return Err(Error::NoSpace {
            path: dir.to_path_buf(),
            needed: space_needed,
            available: space_available,
        });
    }
    if let Some(fp) = &files {
        let at = if fp.out.is_dir() {
            fp.out.clone()
        } else {
            fsutil::parent_dir(&fp.out)
        };
        let free = fsutil::free_space(&at)?;
        // On the database's file system the two add up.
        let same_fs = {
            use std::os::unix::fs::MetadataExt;
            match (std::fs::metadata(&at), std::fs::metadata(dir)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev(),
                _ => false,
            }
        };
        let needed = if same_fs {
            fp.bytes.saturating_add(space_needed)
        } else {
            fp.bytes
        };
        if free < needed {
            return Err(Error::NoSpace {
                path: at,
                needed,
                available: free,
            });
        }
    }
    // What the plan reports covers everything the restore writes: the files too.
    let space_needed = space_needed.saturating_add(files.as_ref().map_or(0, |fp| fp.bytes));
    Ok((space_needed, space_available))
}

/// Refuses a clear safety archive of the replaced database in a bucket when the archive
/// restored is encrypted (a warning when it goes to a local directory).
fn refuse_clear_safety(archive: &Path, dir: &Path, warnings: &mut Vec<String>) -> Result<()> {
    if crate::format::crypt::is_encrypted_file(archive) {
        if crate::location::is_remote(dir) {
            return Err(Error::InvalidOption(format!(
                "{} is encrypted, but the safety archive of the database it replaces would be stored in clear in {}: \
                 pass --encrypt-to/--encrypt-to-file (or --passphrase-file) to encrypt it, or --safety-dir DIR",
                archive.display(),
                dir.display()
            )));
        }
        warnings.push(format!(
            "the archive is encrypted, but the safety archive of the database it replaces will be stored in clear in {} \
             (pass --encrypt-to or --passphrase-file to encrypt it)",
            dir.display()
        ));
    }
    Ok(())
}

/// The checks the restore will run, by name, in order.
fn planned_checks(
    content: Content,
    manifest: &Manifest,
    opts: &RestoreOptions,
    files: Option<&crate::format::files::FilesPlan>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut checks = match content {
        Content::Archive if manifest.kind == "incremental" => vec![
            "archive structure (every link of the chain)".to_string(),
            format!(
                "chain: {} links composed, each link's checksums and identity, the result against the newest link's record",
                manifest.chain_depth + 1
            ),
            "manifest header".into(),
            "row counts".into(),
        ],
        Content::Archive => vec![
            "archive structure".to_string(),
            "checksum manifest.json".into(),
            "checksum database.sqlite".into(),
            "manifest header".into(),
            "row counts".into(),
        ],
        Content::LitevaultDump => vec![
            "dump structure (every statement checked against what a dump may do)".to_string(),
            "checksum dump".into(),
            "manifest header".into(),
            "row counts".into(),
            if opts.quick {
                "round trip (skipped with --quick)"
            } else {
                "round trip (the rebuilt database dumps back to the same text)"
            }
            .into(),
        ],
        Content::ForeignDump => {
            warnings.push(
                "a foreign SQL dump: it is loaded as untrusted SQL (only schema statements and INSERTs), and \
                 has no checksums or manifest to compare with"
                    .into(),
            );
            vec!["dump structure (every statement checked against what a dump may do)".to_string()]
        }
    };
    checks.extend([
        if opts.quick {
            "quick_check"
        } else {
            "integrity_check"
        }
        .into(),
        "foreign_key_check".into(),
    ]);
    if manifest.db.tables.iter().any(|t| t.kind == "virtual") {
        checks.push("fts integrity (each full-text table)".into());
    }
    match (opts.reindex, content) {
        (Reindex::No, _) => {}
        (_, Content::LitevaultDump | Content::ForeignDump) => {
            warnings.push(format!("--reindex: {}", verify::DUMP_REINDEX));
        }
        (Reindex::All, Content::Archive) => {
            let at = checks
                .iter()
                .position(|c| c == "manifest header")
                .unwrap_or(checks.len());
            checks.insert(
                at,
                "reindex (every index rebuilt from its table before the checks)".into(),
            );
        }
        (Reindex::Disputed, Content::Archive) => checks.push(
            "reindex (the indexes integrity_check disputes, if no storage damage is found, rebuilt from \
             their tables; then the checks again)"
                .into(),
        ),
    }
    if let Some(fp) = &files {
        checks.insert(
            checks.len().min(3),
            format!(
                "checksum files ({} entries, {} bytes, each against the manifest and SHA256SUMS)",
                fp.count, fp.bytes
            ),
        );
    }
    checks
}

/// Looks at the database a restore would replace. A file SQLite cannot read as a database (not
/// SQLite at all, or corrupt beyond reading its schema) is reported as such; any other reason
/// SQLite refuses it (a hot journal, a lock, permissions) is an error: restore never guesses.
fn inspect_target(target: &Path) -> Result<TargetState> {
    let size = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    let in_use = fsutil::lock_holders(target);
    let mut state = TargetState {
        size,
        is_database: false,
        user_version: None,
        page_size: None,
        journal_mode: None,
        in_use,
    };
    let conn = match db::open_source(target) {
        Ok(conn) => conn,
        Err(Error::NotADatabase { .. }) | Err(Error::CorruptDatabase { .. }) => return Ok(state),
        Err(e) => return Err(e),
    };
    let int = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    let e = |err| Error::sqlite("inspect", target, err);
    state.user_version = Some(int("PRAGMA user_version").map_err(e)?);
    state.page_size = Some(int("PRAGMA page_size").map_err(e)? as u32);
    state.journal_mode = Some(
        conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .map_err(e)?
            .to_ascii_lowercase(),
    );
    state.is_database = true;
    Ok(state)
}

/// Restores `archive` to `target` as [`plan_restore`] plans it.
///
/// ```no_run
/// use litevault::{restore, Context, RestoreOptions, NoProgress};
/// let opts = RestoreOptions { overwrite: true, ..Default::default() };
/// let report = restore(&Context::new(), "app-20261121T101500Z.tar.zst".as_ref(), "app.db".as_ref(), &opts, &NoProgress)?;
/// if let Some(safety) = &report.safety_archive {
///     println!("previous database kept in {}", safety.display());
/// }
/// # Ok::<(), litevault::Error>(())
/// ```
pub fn restore(
    ctx: &Context,
    archive: &Path,
    target: &Path,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    ctx.apply_priority();
    let started = Instant::now();
    let mut clock = PhaseClock::new();
    // Leftovers of killed runs beside the target go first (they may hold the space needed).
    let swept = fsutil::sweep_leftovers(&fsutil::parent_dir(target));
    let mut plan = plan_restore(ctx, archive, target, opts)?;
    let target = plan.target.clone();
    if !swept.is_empty() {
        plan.warnings.push(fsutil::leftovers_note(&swept));
    }

    // 1. Extract beside the target, checking checksums on the way.
    // A replaced file keeps its permission bits; a new one gets the usual 0666 less the umask.
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&target)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o666)
    };
    let mut tmp = AtomicFile::create(&target, mode)?;
    let tmp_path = tmp.temp_path().to_path_buf();
    let file = tmp
        .file()
        .try_clone()
        .map_err(|e| Error::io("open", &tmp_path, e))?;
    // The manifest read again with the data (it must match the plan's) and the one the new
    // database must match after a live copy.
    let mut reindexed = Vec::new();
    let mut replayed = None;
    // The files are staged in hidden temp files while the archive is read, and renamed into
    // place only once the database is (a failure removes them, and the directories made).
    let mut stager = plan
        .files
        .clone()
        .map(|fp| crate::format::files::Stager::new(fp, &plan.manifest.files));
    let (manifest_now, manifest_after, mut checks) = if plan.manifest.kind == "sql" {
        drop(file);
        // load_checked fsyncs the loaded file itself.
        let loaded = crate::format::dump::check::load_checked(
            archive,
            &tmp_path,
            opts.quick,
            false,
            progress,
            ctx.identities(),
        )?;
        plan.warnings.extend(loaded.report.warnings);
        clock.lap("load and checks");
        (loaded.manifest, loaded.loaded, loaded.checks)
    } else {
        let (contents, file) = match stager.as_mut() {
            Some(stager) => verify::extract_into(ctx, archive, file, &tmp_path, stager, progress)?,
            None => verify::extract_into(
                ctx,
                archive,
                file,
                &tmp_path,
                &mut crate::format::archive::DiscardFiles,
                progress,
            )?,
        };
        contents.ensure_checksums(archive)?;
        let mut checks = contents.checksum_checks();
        clock.lap("extract");
        let mut contents = contents;
        let as_archived = contents.manifest.clone();
        if let Some(replay) = &opts.replay {
            let done = replay.apply(&file, &tmp_path, contents.manifest.db.page_size, ctx.identities())?;
            checks.push(Check::pass(
                "replicated transactions",
                format!(
                    "{} segment(s), {} frame(s) replayed: transaction {} of {} (read {})",
                    done.segments, done.frames, done.txid, replay.point.base, done.time
                ),
            ));
            // The checks compare the database with what the replay made, not with the base.
            let conn = db::open_private(&tmp_path, false)?;
            let info = crate::sqlite::db::DbInfo::read(&conn, &tmp_path)?;
            drop(conn);
            contents.manifest.db_size = info.page_count * u64::from(info.page_size);
            contents.manifest.db = info;
            replayed = Some(done);
            clock.lap("replay");
        }

        // 2. Check the new content before anything is touched, while the disk catches up with
        // it: the fsync that must precede the rename runs meanwhile.
        progress.begin("verify", None);
        let (synced, (extracted, rebuilt)) = std::thread::scope(|s| {
            let sync = s.spawn(|| file.sync_all());
            let extracted = verify::checks_with_reindex(&tmp_path, opts.reindex, &mut |rebuilt| {
                verify::extracted_checks(&tmp_path, &contents.manifest, opts.quick, false, rebuilt)
            });
            clock.lap("checks");
            (sync.join(), extracted)
        });
        checks.extend(extracted);
        reindexed = rebuilt;
        progress.end();
        match synced {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::io("fsync", &tmp_path, e)),
            Err(_) => {
                return Err(Error::io(
                    "fsync",
                    &tmp_path,
                    std::io::Error::other("fsync thread panicked"),
                ))
            }
        }
        let mut after = contents.manifest.clone();
        if !reindexed.is_empty() {
            // SQLite synced its own writes; this covers them whatever its settings. The rebuilt
            // indexes took pages of their own: a live copy must find the new page count.
            file.sync_all().map_err(|e| Error::io("fsync", &tmp_path, e))?;
            let len = file
                .metadata()
                .map_err(|e| Error::io("stat", &tmp_path, e))?
                .len();
            after.db.page_count = len / u64::from(after.db.page_size.max(512));
        }
        clock.lap("rest of the fsync");
        (as_archived, after, checks)
    };
    if let Some(err) = Error::from_failed_checks(archive, &checks) {
        return Err(err);
    }

    // The archive must not have changed since it was planned (the plan's checks used it).
    let foreign = plan.manifest.kind == "sql" && plan.manifest.tool_version.is_empty();
    if !foreign && manifest_now != plan.manifest {
        return Err(Error::bad_archive(
            archive,
            "the archive changed while it was being restored",
        ));
    }

    // The files must be able to go in place before the database does.
    if let Some(stager) = &stager {
        stager.prepare()?;
    }

    // 3 and 4. Keep what is replaced, then put the new content in place.
    let stamp = backup::now_stamps().1;
    let mut safety_archive = None;
    let mut moved_aside = Vec::new();
    let safety = |target: &Path| -> Result<Option<PathBuf>> {
        match (&plan.replaces, &plan.safety_dir) {
            (Some(state), Some(dir)) if state.is_database => {
                let opts = BackupOptions {
                    destination: Destination::Location {
                        dir: Some(dir.clone()),
                        tag: Some("pre-restore".into()),
                    },
                    allow_corrupt: true,
                    encrypt: opts.encrypt.clone(),
                    ..Default::default()
                };
                Ok(Some(backup::backup(ctx, target, &opts, &NoProgress)?.archive))
            }
            _ => Ok(None),
        }
    };
    match plan.strategy {
        Strategy::Create => {
            for stale in &plan.stale_files {
                moved_aside.push(move_aside(stale, &unused_aside(stale, &stamp))?);
            }
            tmp.commit()?;
        }
        Strategy::Live => {
            checks.push(restore_live(
                &tmp_path,
                &target,
                opts.busy_timeout,
                &manifest_after,
                &mut || {
                    // A retry (the target changed meanwhile) supersedes the previous safety archive.
                    if let Some(old) = safety_archive.take() {
                        let _ = std::fs::remove_file(old);
                    }
                    safety_archive = safety(&target)?;
                    Ok(())
                },
            )?);
            drop(tmp);
        }
        Strategy::Swap => {
            safety_archive = safety(&target)?;
            if let Some(holders) = fsutil::lock_holders(&target) {
                return Err(Error::InUse {
                    path: target,
                    detail: holders,
                });
            }
            let is_db = plan.replaces.as_ref().is_some_and(|s| s.is_database);
            if is_db {
                // Fold the old WAL into the file (the safety archive already holds its content)
                // so that its side files hold nothing and cannot apply to the new file.
                checkpoint_and_close(&target)?;
            } else {
                // Keep the unreadable file under another name: a hard link, so the target name
                // is never missing; its side files follow it under the same new name, so the
                // kept copy stays whole (a hot journal, WAL frames).
                let aside = unused_aside(&target, &stamp);
                std::fs::hard_link(&target, &aside).map_err(|e| Error::io("keep a copy of", &target, e))?;
                for side in fsutil::existing_sidecars(&target) {
                    let suffix = side.to_string_lossy()[target.to_string_lossy().len()..].to_string();
                    moved_aside.push(move_aside(&side, &fsutil::sidecar(&aside, &suffix))?);
                }
                moved_aside.insert(0, aside);
            }
            if let Some(side) = fsutil::existing_sidecars(&target).first() {
                return Err(Error::InUse {
                    path: side.clone(),
                    detail: "a side file is still there after the checkpoint".into(),
                });
            }
            tmp.commit_replace()?;
        }
    }
    clock.lap("put in place");
    let files_restored = match stager {
        Some(stager) => {
            // The database is in place: a failure now must say so, and where its old content is.
            let n = stager.commit().map_err(|e| Error::FilesAfterRestore {
                path: target.clone(),
                safety_archive: safety_archive.clone(),
                detail: e.to_string(),
            })?;
            clock.lap("files in place");
            n
        }
        None => 0,
    };
    Ok(RestoreReport {
        files_restored,
        replayed,
        plan,
        restored: true,
        checks,
        safety_archive,
        moved_aside,
        reindexed,
        duration_ms: started.elapsed().as_millis() as u64,
        phases: clock.into_phases(),
    })
}

/// `<path>.litevault-replaced-<stamp>`, with `-2`, `-3`... when taken (never overwrites).
fn unused_aside(path: &Path, stamp: &str) -> PathBuf {
    let base = fsutil::sidecar(path, &format!(".litevault-replaced-{stamp}"));
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|n| fsutil::sidecar(&base, &format!("-{n}")))
        .find(|p| !p.exists())
        .expect("a free name")
}

fn move_aside(path: &Path, aside: &Path) -> Result<PathBuf> {
    if aside.exists() {
        return Err(Error::WouldOverwrite {
            path: aside.to_path_buf(),
        });
    }
    std::fs::rename(path, aside).map_err(|e| Error::io("move aside", path, e))?;
    fsutil::sync_dir(&fsutil::parent_dir(path))?;
    Ok(aside.to_path_buf())
}

fn checkpoint_and_close(target: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite("open", target, e))?;
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| Error::sqlite("checkpoint", target, e))?;
    if busy != 0 || log != done {
        return Err(Error::InUse {
            path: target.to_path_buf(),
            detail: format!("its WAL could not be checkpointed ({done} of {log} frames)"),
        });
    }
    conn.close().map_err(|(_, e)| Error::sqlite("close", target, e))
}

fn restore_live(
    verified: &Path,
    target: &Path,
    busy_timeout: Duration,
    manifest: &Manifest,
    before: &mut dyn FnMut() -> Result<()>,
) -> Result<Check> {
    // Never closed: closing any descriptor of the target drops this process's POSIX locks on
    // it, those of the connections below and of any other (a daemon replicating it).
    let raw = crate::fsutil::kept_open(target, false).map_err(|e| Error::io("open", target, e))?;
    let src = db::open_private(verified, false)?;
    let mut dst = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite("open", target, e))?;
    db::fast_busy_handler(&mut dst, target)?;
    // Full durability for this one commit: the journal/WAL is synced before and after.
    dst.execute_batch("PRAGMA synchronous=FULL")
        .map_err(|e| Error::sqlite("configure", target, e))?;
    let wal = dst
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map(|m| m.eq_ignore_ascii_case("wal"))
        .map_err(|e| Error::sqlite("read journal mode of", target, e))?;
    // How to see another connection's commit while the copy holds the write lock: in WAL mode
    // a second connection may still read, and its data_version moves on every foreign commit;
    // in rollback mode every commit bumps the header's change counter (offset 24), read here
    // with pread from a descriptor that stays open.
    let mut watcher = Connection::open_with_flags(
        target,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite("open", target, e))?;
    db::fast_busy_handler(&mut watcher, target)?;
    let version = || -> Result<i64> {
        if wal {
            watcher
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(|e| Error::sqlite("read data_version of", target, e))
        } else {
            use std::os::unix::fs::FileExt;
            let mut b = [0u8; 4];
            raw.read_exact_at(&mut b, 24)
                .map_err(|e| Error::io("read header of", target, e))?;
            Ok(u32::from_be_bytes(b) as i64)
        }
    };
    crate::sqlite::snapshot::copy_into_live(&src, &dst, target, busy_timeout, &version, before)?;
    // Read back through the same connection, before anyone else can write.
    let check = after_check(&dst, manifest);
    if check.failed() {
        return Err(Error::VerificationFailed {
            path: target.to_path_buf(),
            failed: format!("{}: {}", check.name, check.detail),
            class: None,
        });
    }
    if wal {
        // The copy went into the WAL; fold it back so it does not stay database-sized. A
        // reader may hold it up; waiting for it would stall the application's writers, so try
        // briefly and otherwise leave it to SQLite's own checkpoints.
        let _ = dst.busy_timeout(Duration::from_millis(200));
        let _ = dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    }
    drop(watcher);
    drop(dst);
    drop(src);
    drop(raw);
    Ok(check)
}

/// A cheap check right after a live copy: the target has the archive's header state.
fn after_check(conn: &Connection, m: &Manifest) -> Check {
    let name = "after restore: header";
    let int = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(-1);
    let (uv, pc, ps) = (
        int("PRAGMA user_version"),
        int("PRAGMA page_count"),
        int("PRAGMA page_size"),
    );
    if uv == m.db.user_version && pc as u64 == m.db.page_count && ps as u32 == m.db.page_size {
        Check::pass(name, format!("user_version {uv}, {pc} pages of {ps} bytes"))
    } else {
        Check::fail(
            name,
            format!(
                "expected user_version {}, {} pages of {}; found {uv}, {pc} pages of {ps}",
                m.db.user_version, m.db.page_count, m.db.page_size
            ),
        )
    }
}
