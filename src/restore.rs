//! `restore`: put an archive's database in place without ever losing data by accident.
//!
//! [`plan_restore`] decides everything first and changes nothing (it is what `--dry-run`
//! prints): it refuses an existing target without `overwrite`, an archive with a newer schema
//! without `allow_newer_schema`, and a swap under a process that holds the target; it checks free
//! space. [`restore`] then follows the plan:
//!
//! 1. extract the database into a hidden temp file beside the target, checking every checksum;
//! 2. check the extracted file against its manifest and with SQLite's integrity checks — nothing
//!    is touched if any check fails;
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

use crate::backup::{self, BackupOptions};
use crate::db::{self, Check};
use crate::error::{Error, Result};
use crate::fsutil::{self, AtomicFile};
use crate::manifest::Manifest;
use crate::progress::{NoProgress, Progress};
use crate::verify;

/// Options of [`restore`] and [`plan_restore`].
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Replace an existing database (a safety archive of it is kept first).
    pub overwrite: bool,
    /// Restore an archive whose `user_version` is newer than the target's.
    pub allow_newer_schema: bool,
    /// Run `quick_check` instead of `integrity_check` before the swap.
    pub quick: bool,
    /// Where the safety archive goes (default: the backup directory).
    pub safety_dir: Option<PathBuf>,
    /// How long to wait for other connections' locks on a live target.
    pub busy_timeout: Duration,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            overwrite: false,
            allow_newer_schema: false,
            quick: false,
            safety_dir: None,
            busy_timeout: Duration::from_secs(30),
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
    /// Left-over `-wal`/`-shm`/`-journal` files of a missing target, to be moved aside.
    pub stale_files: Vec<PathBuf>,
    /// Checks that run before anything is swapped.
    pub checks: Vec<String>,
    /// Bytes needed in the target's directory.
    pub space_needed: u64,
    /// Bytes free there.
    pub space_available: u64,
    /// Things worth knowing that do not stop the restore.
    pub warnings: Vec<String>,
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
    /// Milliseconds the restore took.
    pub duration_ms: u64,
}

/// Works out what restoring `archive` to `target` would do, refusing what is unsafe. Changes
/// nothing.
pub fn plan_restore(archive: &Path, target: &Path, opts: &RestoreOptions) -> Result<RestorePlan> {
    let manifest = crate::archive::read_manifest(archive)?;
    let target = std::path::absolute(target).map_err(|e| Error::io("resolve", target, e))?;
    let dir = fsutil::parent_dir(&target);
    if !dir.is_dir() {
        return Err(Error::NotFound { path: dir });
    }
    if target.is_dir() {
        return Err(Error::InvalidOption(format!("{} is a directory", target.display())));
    }
    let mut warnings = Vec::new();
    let sidecars = fsutil::existing_sidecars(&target);
    let exists = target.exists();
    let mut stale_files = Vec::new();
    let (strategy, replaces) = if exists {
        if !opts.overwrite {
            return Err(Error::WouldOverwrite { path: target });
        }
        let state = inspect_target(&target);
        let strategy = if !state.is_database {
            warnings.push(format!(
                "{} is not a readable SQLite database; it will be kept as a file beside the new one",
                target.display()
            ));
            Strategy::Swap
        } else if state.journal_mode.as_deref() == Some("wal") && state.page_size != Some(manifest.db.page_size) {
            Strategy::Swap
        } else {
            Strategy::Live
        };
        if strategy == Strategy::Swap {
            if let Some(holders) = &state.in_use {
                return Err(Error::InUse {
                    path: target,
                    detail: format!(
                        "{holders}; its content can only be replaced by swapping the file{}, which would \
                         pull it from under that process",
                        if state.is_database { " (its page size differs from the archive's in WAL mode)" } else { "" }
                    ),
                });
            }
        }
        if let Some(current) = state.user_version {
            let incoming = manifest.db.user_version;
            if incoming > current && !opts.allow_newer_schema {
                return Err(Error::NewerSchema { path: target, archive: incoming, target: current });
            }
            if incoming > current {
                warnings.push(format!("schema version goes up from {current} to {incoming} (allowed)"));
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
                return Err(Error::WouldOverwrite { path: sidecars[0].clone() });
            }
            warnings.push("left-over -wal/-shm/-journal files without a database will be moved aside".into());
            stale_files = sidecars;
        }
        (Strategy::Create, None)
    };

    // The extracted copy, plus SQLite's journal or WAL for a live copy (about the database size).
    let space_needed = manifest.db_size * if strategy == Strategy::Live { 2 } else { 1 };
    let space_available = fsutil::free_space(&dir)?;
    if space_available < space_needed {
        return Err(Error::NoSpace { path: dir, needed: space_needed, available: space_available });
    }
    let safety_dir = exists.then(|| opts.safety_dir.clone().unwrap_or_else(backup::default_backup_dir));
    let mut checks = vec![
        "archive structure".to_string(),
        "checksum manifest.json".into(),
        "checksum database.sqlite".into(),
        "manifest header".into(),
        "row counts".into(),
        if opts.quick { "quick_check" } else { "integrity_check" }.into(),
        "foreign_key_check".into(),
    ];
    if manifest.db.tables.iter().any(|t| t.kind == "virtual") {
        checks.push("fts integrity (each full-text table)".into());
    }
    if manifest.corrupt {
        warnings.push("the archive is marked corrupt (made with --allow-corrupt): its checks will fail".into());
    }
    Ok(RestorePlan {
        archive: archive.to_path_buf(),
        target,
        manifest,
        strategy,
        replaces,
        safety_dir,
        stale_files,
        checks,
        space_needed,
        space_available,
        warnings,
    })
}

fn inspect_target(target: &Path) -> TargetState {
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
    if let Ok(conn) = db::open_source(target) {
        let int = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).ok();
        state.user_version = int("PRAGMA user_version");
        state.page_size = int("PRAGMA page_size").map(|p| p as u32);
        state.journal_mode = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
            .ok()
            .map(|s| s.to_ascii_lowercase());
        state.is_database = state.user_version.is_some();
    }
    state
}

/// Restores `archive` to `target` as [`plan_restore`] plans it.
///
/// ```no_run
/// use litevault::{restore, RestoreOptions, NoProgress};
/// let opts = RestoreOptions { overwrite: true, ..Default::default() };
/// let report = restore("app-20261121T101500Z.tar.zst".as_ref(), "app.db".as_ref(), &opts, &NoProgress)?;
/// if let Some(safety) = &report.safety_archive {
///     println!("previous database kept in {}", safety.display());
/// }
/// # Ok::<(), litevault::Error>(())
/// ```
pub fn restore(archive: &Path, target: &Path, opts: &RestoreOptions, progress: &dyn Progress) -> Result<RestoreReport> {
    let started = Instant::now();
    let plan = plan_restore(archive, target, opts)?;
    let target = plan.target.clone();

    // 1. Extract beside the target, checking checksums on the way.
    // A replaced file keeps its permission bits; a new one gets the usual 0666 less the umask.
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&target).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o666)
    };
    let mut tmp = AtomicFile::create(&target, mode)?;
    let tmp_path = tmp.temp_path().to_path_buf();
    let file = tmp.file().try_clone().map_err(|e| Error::io("open", &tmp_path, e))?;
    let contents = verify::extract_into(archive, file, &tmp_path, progress)?;
    contents.ensure_checksums(archive)?;
    let mut checks = contents.checksum_checks();

    // 2. Check the new content before anything is touched.
    progress.begin("verify", None);
    checks.extend(verify::extracted_checks(&tmp_path, &contents.manifest, opts.quick, false));
    progress.end();
    let failed: Vec<String> =
        checks.iter().filter(|c| c.failed()).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    if !failed.is_empty() {
        return Err(Error::VerificationFailed { path: archive.to_path_buf(), failed: failed.join("; ") });
    }

    // 3. Keep what is replaced.
    let stamp = backup::now_stamps().1;
    let mut safety_archive = None;
    let mut moved_aside = Vec::new();
    if let (Some(state), Some(safety_dir)) = (&plan.replaces, &plan.safety_dir) {
        if state.is_database {
            let opts = BackupOptions {
                dir: Some(safety_dir.clone()),
                tag: Some("pre-restore".into()),
                allow_corrupt: true,
                ..Default::default()
            };
            let report = backup::backup(&target, &opts, &NoProgress)?;
            safety_archive = Some(report.archive);
        }
    }

    // 4. Put the new content in place.
    match plan.strategy {
        Strategy::Create => {
            for stale in &plan.stale_files {
                moved_aside.push(move_aside(stale, &stamp)?);
            }
            tmp.commit()?;
        }
        Strategy::Live => {
            restore_live(&tmp_path, &target, opts.busy_timeout)?;
            checks.push(after_check(&target, &contents.manifest));
            drop(tmp);
        }
        Strategy::Swap => {
            if let Some(holders) = fsutil::lock_holders(&target) {
                return Err(Error::InUse { path: target, detail: holders });
            }
            let is_db = plan.replaces.as_ref().is_some_and(|s| s.is_database);
            if is_db {
                // Fold the old WAL into the file (the safety archive already holds its content)
                // so that removing the side files loses nothing and cannot apply to the new file.
                checkpoint_and_close(&target)?;
            } else {
                // Keep the unreadable file under another name: a hard link, so the target name
                // is never missing.
                let aside = aside_name(&target, &stamp);
                std::fs::hard_link(&target, &aside).map_err(|e| Error::io("keep a copy of", &target, e))?;
                moved_aside.push(aside);
            }
            for side in fsutil::existing_sidecars(&target) {
                moved_aside.push(move_aside(&side, &stamp)?);
            }
            tmp.commit_replace()?;
        }
    }
    Ok(RestoreReport {
        plan,
        restored: true,
        checks,
        safety_archive,
        moved_aside,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

fn aside_name(path: &Path, stamp: &str) -> PathBuf {
    fsutil::sidecar(path, &format!(".litevault-replaced-{stamp}"))
}

fn move_aside(path: &Path, stamp: &str) -> Result<PathBuf> {
    let aside = aside_name(path, stamp);
    std::fs::rename(path, &aside).map_err(|e| Error::io("move aside", path, e))?;
    fsutil::sync_dir(&fsutil::parent_dir(path))?;
    Ok(aside)
}

fn checkpoint_and_close(target: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite("open", target, e))?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
        .map_err(|e| Error::sqlite("checkpoint", target, e))?;
    conn.close().map_err(|(_, e)| Error::sqlite("close", target, e))
}

fn restore_live(verified: &Path, target: &Path, busy_timeout: Duration) -> Result<()> {
    let src = db::open_private(verified, false)?;
    let dst = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite("open", target, e))?;
    dst.busy_timeout(busy_timeout).map_err(|e| Error::sqlite("configure", target, e))?;
    // Full durability for this one commit: the journal/WAL is synced before and after.
    dst.execute_batch("PRAGMA synchronous=FULL").map_err(|e| Error::sqlite("configure", target, e))?;
    crate::snapshot::copy_into_live(&src, &dst, target, busy_timeout)?;
    let wal = dst
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map(|m| m.eq_ignore_ascii_case("wal"))
        .unwrap_or(false);
    if wal {
        // The copy went into the WAL; fold it back so it does not stay database-sized. Readers
        // may hold it up; that only delays the truncation, so the result is ignored.
        let _ = dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0));
    }
    Ok(())
}

/// A cheap check after a live copy: the target now has the archive's header state.
fn after_check(target: &Path, m: &Manifest) -> Check {
    let name = "after restore: header";
    let conn = match db::open_source(target) {
        Ok(c) => c,
        Err(e) => return Check::fail(name, e.to_string()),
    };
    let int = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(-1);
    let (uv, pc, ps) = (int("PRAGMA user_version"), int("PRAGMA page_count"), int("PRAGMA page_size"));
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
