//! The `litevault` command: parses arguments, calls one library function, renders its report
//! (human text or `--json`) and maps errors to documented exit codes. All the work is in the
//! library; nothing here touches a database.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use litevault::{
    BackupOptions, Check, CheckStatus, Compression, Error, Method, Progress, Reindex, RestoreOptions,
    VerifyOptions,
};

/// Exit codes, as documented in the README.
mod serve_cmd;

mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const CORRUPT: u8 = 3;
}

#[derive(Parser)]
#[command(
    name = "litevault",
    version,
    about = "Safe, fast, verifiable backups of SQLite databases, and restores that cannot lose data",
    after_help = "Examples:\n  litevault backup app.db\n  litevault list\n  litevault verify ~/.local/share/litevault/backups/app-20261121T101500Z.tar.zst\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite\n\nExit codes: 0 ok, 1 error, 2 usage, 3 corruption or failed verification, 4 refused (would overwrite, in use, newer schema)."
)]
struct Cli {
    /// Print the report as JSON on stdout (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print more detail (every table, every check).
    #[arg(short, long, global = true)]
    verbose: bool,
    /// An age identity file (AGE-SECRET-KEY-1... lines, as age-keygen writes) or an
    /// unprotected SSH private key, to read encrypted backups with (repeatable; default:
    /// $LITEVAULT_IDENTITY).
    #[arg(long, global = true, value_name = "KEY_FILE")]
    identity: Vec<PathBuf>,
    /// A file whose first line is the passphrase of passphrase-encrypted backups: reads them,
    /// and on backup (without --encrypt-to) encrypts with it.
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Who can read what a command writes (backup, and the safety archives of restore and merge).
#[derive(clap::Args, Clone)]
struct EncryptArgs {
    /// Encrypt to this age recipient (age1...) or SSH public key (ssh-ed25519 / ssh-rsa
    /// AAAA...); repeatable. The file gets `.age` at the end of its name.
    #[arg(long, value_name = "RECIPIENT")]
    encrypt_to: Vec<String>,
    /// Encrypt to the recipients in FILE (one a line, # comments), as `age -R` reads them;
    /// repeatable.
    #[arg(long, value_name = "FILE")]
    encrypt_to_file: Vec<PathBuf>,
}

impl EncryptArgs {
    /// The encryption asked for: the recipients, else the passphrase of --passphrase-file.
    fn encryption(&self, cli: &Cli) -> Result<Option<litevault::crypt::Encryption>, Error> {
        let to = litevault::crypt::Encryption::to_recipients(&self.encrypt_to, &self.encrypt_to_file)?;
        match (to, &cli.passphrase_file) {
            (Some(_), Some(_)) => Err(Error::InvalidOption(
                "--passphrase-file cannot be combined with --encrypt-to/--encrypt-to-file (age encrypts to a passphrase alone)"
                    .into(),
            )),
            (Some(to), None) => Ok(Some(to)),
            (None, Some(p)) => Ok(Some(litevault::crypt::Encryption::with_passphrase_file(p)?)),
            (None, None) => Ok(None),
        }
    }
}

/// Installs the keys that encrypted backups are read with: --identity (else
/// $LITEVAULT_IDENTITY) and --passphrase-file.
fn install_identities(cli: &Cli) -> Result<(), Error> {
    let mut ids = litevault::crypt::Identities::new();
    let mut files = cli.identity.clone();
    if files.is_empty() {
        if let Some(env) = std::env::var_os("LITEVAULT_IDENTITY").filter(|v| !v.is_empty()) {
            files.push(PathBuf::from(env));
        }
    }
    for f in &files {
        ids.add_file(f)?;
    }
    if let Some(p) = &cli.passphrase_file {
        ids.add_passphrase_file(p)?;
    }
    litevault::crypt::set_identities(ids);
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
enum MethodArg {
    /// Page-for-page copy through SQLite's backup API (pages byte-identical).
    Pages,
    /// VACUUM INTO: a compacted copy.
    Vacuum,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// A tar archive of the database file (exact pages; fastest to restore).
    Archive,
    /// SQL text: exact values, deterministic, one row per line (diffable, git-friendly).
    Sql,
}

/// Which indexes `--reindex` rebuilds.
#[derive(Clone, Copy, ValueEnum)]
enum ReindexArg {
    /// The indexes integrity_check finds disagreeing with their tables (then checks again).
    Disputed,
    /// Every index, before the checks.
    All,
}

impl ReindexArg {
    fn to_lib(arg: Option<ReindexArg>) -> Reindex {
        match arg {
            None => Reindex::No,
            Some(ReindexArg::Disputed) => Reindex::Disputed,
            Some(ReindexArg::All) => Reindex::All,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum PriorityArg {
    Low,
    Normal,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Take a consistent snapshot of a (live) database into a compressed, checksummed archive.
    #[command(
        after_help = "Examples:\n  litevault backup app.db\n  litevault backup app.db -o /backups/app.tar.zst\n  litevault backup app.db --dir /backups --method vacuum --compression gzip\n  litevault backup app.db --format sql                          # app-<stamp>.sql.zst\n  litevault backup app.db --format sql --compression none -o history/app.sql\n  litevault backup app.db --format sql --table notes --table tags\n  litevault backup app.db --dir s3://my-bucket/prod/app          # S3 (AWS_* variables, ~/.aws)\n  litevault backup app.db -o s3://my-bucket/prod/app/pre-migration.tar.zst\n  litevault backup app.db --dir /backups --incremental --full-every 24   # changed pages only\n  litevault backup app.db --encrypt-to age1...                  # app-<stamp>.tar.zst.age (age)\n  litevault backup app.db --encrypt-to-file recipients.txt --dir s3://my-bucket/prod/app\n  litevault backup app.db --include uploads --include exports   # + files/uploads/..., files/exports/...\n\nDefault location: --dir, else $LITEVAULT_DIR, else ~/.local/share/litevault/backups,\nas <name>-<YYYYMMDDTHHMMSSZ>.tar.zst (.sql.zst, .sql.gz or .sql for --format sql);\nthe name is the database file's stem unless --name says otherwise."
    )]
    Backup {
        /// The database file to back up.
        db: PathBuf,
        /// Write the archive to this file or object (s3://bucket/key).
        #[arg(short, long, conflicts_with = "dir")]
        output: Option<PathBuf>,
        /// Write the archive into this location (a directory or s3://bucket/prefix) under its
        /// default name.
        #[arg(long, value_name = "LOCATION")]
        dir: Option<PathBuf>,
        /// The database's name in the location (default: its file stem).
        #[arg(long, conflicts_with = "output")]
        name: Option<String>,
        /// Store only the pages that changed since the newest backup of this name in the
        /// location (a full backup when there is none or it cannot be a parent; says why).
        #[arg(long, conflicts_with = "output")]
        incremental: bool,
        /// With --incremental: a full backup once a chain has N links.
        #[arg(long, value_name = "N", requires = "incremental")]
        full_every: Option<u32>,
        /// How to take the snapshot.
        #[arg(long, value_enum, default_value = "pages")]
        method: MethodArg,
        /// Archive compression.
        #[arg(long, value_enum, default_value = "zstd")]
        compression: CompressionArg,
        /// Compression level (zstd 1-22, default 3; gzip 0-9, default 6).
        #[arg(long)]
        level: Option<i32>,
        /// Archive a database that fails quick_check anyway, marked corrupt in the manifest.
        #[arg(long)]
        allow_corrupt: bool,
        /// Also check every full-text index (FTS5/FTS4) before archiving it. By default a
        /// backup checks storage (every b-tree and page, foreign keys); restore and verify
        /// check the indexes.
        #[arg(long)]
        check_fts: bool,
        /// Compression worker threads (0: one per core).
        #[arg(long, default_value_t = 0, value_name = "N")]
        threads: u32,
        /// CPU and I/O priority: `low` (nice 10, lowest best-effort I/O: the application
        /// keeps the CPU it needs; an idle machine is used fully) or `normal`.
        #[arg(long, value_enum, default_value = "low")]
        priority: PriorityArg,
        /// Do not run the PASSIVE checkpoint of a WAL source after the snapshot is released
        /// (the application's next commit then copies everything written during the backup
        /// from the -wal, inside that commit).
        #[arg(long)]
        no_checkpoint: bool,
        /// Replace the file given with -o if it exists (atomically).
        #[arg(long, requires = "output")]
        overwrite: bool,
        /// What to write: an archive of the database file, or an SQL dump.
        #[arg(long, value_enum, default_value = "archive")]
        format: FormatArg,
        /// SQL dumps: dump only this table or view (repeatable); its indexes and triggers follow.
        #[arg(long = "table", value_name = "NAME")]
        tables: Vec<String>,
        /// SQL dumps: leave this table or view out (repeatable).
        #[arg(long = "exclude-table", value_name = "NAME")]
        exclude_tables: Vec<String>,
        #[command(flatten)]
        crypt: EncryptArgs,
        /// Also archive the files under this directory (repeatable), as files/<DIR's name>/...,
        /// each with its size, mode, mtime and SHA-256 in the manifest and SHA256SUMS; read after
        /// the database's snapshot. Symlinks are recorded, never followed: a relative one that
        /// stays inside DIR is kept as a symlink; an absolute or escaping one, and any fifo,
        /// socket or device, fails the backup (naming it). Hard links are stored as files. A file
        /// that keeps changing while read fails the backup; one deleted meanwhile is left out.
        /// Not with --format sql; with --incremental every archive holds its own full copy.
        #[arg(long, value_name = "DIR")]
        include: Vec<PathBuf>,
    },
    /// List the archives in the backup directory (reads only each archive's manifest).
    #[command(
        after_help = "Examples:\n  litevault list\n  litevault list --dir /backups --json\n  litevault list --dir s3://my-bucket/prod/app"
    )]
    List {
        /// Location to list: a directory or s3://bucket/prefix (default: $LITEVAULT_DIR, else
        /// ~/.local/share/litevault/backups).
        #[arg(long, value_name = "LOCATION")]
        dir: Option<PathBuf>,
    },
    /// Copy archives to another location, each under its own name (never replacing one), checked
    /// on arrival (the copy is read back: same size, same SHA-256).
    #[command(
        after_help = "Examples:\n  litevault copy ~/.local/share/litevault/backups/app-20261201T101500Z.tar.zst s3://my-bucket/prod/app\n  litevault copy /backups/app-*.tar.zst s3://my-bucket/prod/app   # push several\n  litevault copy s3://my-bucket/prod/app/app-20261201T101500Z.tar.zst /restore-area   # pull one"
    )]
    Copy {
        /// The archives to copy.
        #[arg(required = true, num_args = 1.., value_name = "ARCHIVE")]
        sources: Vec<PathBuf>,
        /// The destination location (a directory or s3://bucket/prefix).
        #[arg(required = true, value_name = "LOCATION")]
        dest: PathBuf,
    },
    /// Delete old backups by retention policy (restic's --keep-* rules), per name.
    #[command(
        after_help = "Examples:\n  litevault prune --dir /backups --keep-daily 7 --keep-weekly 4 --dry-run\n  litevault prune --dir s3://my-bucket/prod/app --name app --keep-last 3 --keep-within 30d --json\n\nEach --keep-* policy keeps the newest backup in each of its last N periods (UTC) that have one;\npolicies add up; --keep-within keeps everything that much younger than the newest backup.\nBackups are grouped by name (<name>-<stamp>...); safety archives (<name>-pre-restore-...,\n<name>-pre-merge-...) form groups of their own. Objects litevault did not name are never deleted.\nprune also aborts litevault's incomplete uploads there that are older than a day."
    )]
    Prune {
        /// Location to prune (default: $LITEVAULT_DIR, else ~/.local/share/litevault/backups).
        #[arg(long, value_name = "LOCATION")]
        dir: Option<PathBuf>,
        /// Only this name's backups (and its safety archives).
        #[arg(long)]
        name: Option<String>,
        /// Keep the N newest backups.
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
        /// Keep the newest backup of each of the last N hours that have one.
        #[arg(long, value_name = "N")]
        keep_hourly: Option<u32>,
        /// Keep the newest backup of each of the last N days that have one.
        #[arg(long, value_name = "N")]
        keep_daily: Option<u32>,
        /// Keep the newest backup of each of the last N ISO weeks that have one.
        #[arg(long, value_name = "N")]
        keep_weekly: Option<u32>,
        /// Keep the newest backup of each of the last N months that have one.
        #[arg(long, value_name = "N")]
        keep_monthly: Option<u32>,
        /// Keep the newest backup of each of the last N years that have one.
        #[arg(long, value_name = "N")]
        keep_yearly: Option<u32>,
        /// Keep every backup created within this long of the newest one (e.g. 30d, 12h, 1w2d).
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<String>,
        /// Print every backup's verdict and reason; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a policy that removes every backup of a name.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: scheduled backups, retention, restore drills, an HTTP API and metrics.
    #[command(
        after_help = "Examples:\n  litevault serve --config litevault.toml            # foreground; logs to stderr\n  litevault serve --config litevault.toml --check    # check the file and exit\n  LITEVAULT_TOKEN=$(cat /etc/litevault/token) litevault serve --config /etc/litevault/litevault.toml --log-format json\n\nSignals: SIGTERM or SIGINT stop it (running jobs get `shutdown_grace`, 8 s by default, then are\ncancelled: uploads aborted, temp files removed; exit 0); SIGHUP reloads the configuration (a bad\nfile keeps the running one, and the log says why). docs/daemon.md documents the file and the API."
    )]
    Serve {
        /// The configuration file (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check the configuration, print what would run, and exit (0 when valid).
        #[arg(long)]
        check: bool,
        /// How log lines are written to stderr.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormatArg,
    },
    /// Print an archive's or SQL dump's manifest.
    #[command(
        after_help = "Examples:\n  litevault show app-20261121T101500Z.tar.zst --json\n  litevault show history/app.sql"
    )]
    Show {
        /// The archive.
        archive: PathBuf,
    },
    /// Check an archive or SQL dump (checksums, manifest, SQLite integrity) or a database file.
    #[command(
        after_help = "Examples:\n  litevault verify app-20261121T101500Z.tar.zst\n  litevault verify app.db --quick\n  litevault verify app-20261121T101500Z.sql.zst     # rebuilds it in a temp file, proves the round trip\n  litevault verify app-20261121T101500Z.tar.zst --reindex   # rebuild disputed indexes in the temp copy, check again\n\nA failed integrity check says what it found, once per object: storage (damaged pages), index\n(an index disagrees with its table; the rows are intact: --reindex), fts (a full-text index\nno longer matches its content), constraint (rows break their table's constraints).\n\nExit code 3 when any check fails."
    )]
    Verify {
        /// An archive, an SQL dump or a database file.
        path: PathBuf,
        /// Run quick_check instead of the slower integrity_check.
        #[arg(long)]
        quick: bool,
        /// Where to extract an archive's database while checking it (default: system temp dir).
        #[arg(long)]
        temp_dir: Option<PathBuf>,
        /// Rebuild indexes in a temp copy and check that: the ones integrity_check disputes
        /// (then the checks run again), or `--reindex all`. A database file is copied first and
        /// never changed.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "disputed", value_name = "WHICH")]
        reindex: Option<ReindexArg>,
    },
    /// Import other backups (archives or SQL dumps) into an existing database: no duplicates,
    /// integer ids remapped with their foreign keys, one transaction.
    #[command(
        after_help = "Examples:\n  litevault merge teammate.tar.zst app.db --dry-run   # per-table plan, changes nothing\n  litevault merge teammate.sql.zst app.db\n  litevault merge a.tar.zst b.sql app.db              # several sources in one go\n  litevault merge teammate.tar.zst app.db --keys merge.toml --json\n\nRow identity: the keys file's columns, else a non-integer PRIMARY KEY, else the first UNIQUE\nconstraint, else the row's content. Keys file lines: table = [\"column\", ...]\n\nA safety archive of the database as it was is written to the backup directory first\n(<stem>-pre-merge-<stamp>.tar.zst; kept only if the merge changed something)."
    )]
    Merge {
        /// The backups to import (archives or SQL dumps).
        #[arg(required = true, num_args = 1.., value_name = "BACKUP")]
        sources: Vec<PathBuf>,
        /// The database to merge into.
        #[arg(required = true, value_name = "DB")]
        target: PathBuf,
        /// Compute and print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Row identity per table: lines of `table = ["column", ...]`.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Create tables that exist only in the incoming data (default: report and skip).
        #[arg(long)]
        create_missing_tables: bool,
        /// Seconds to wait for the database's write lock.
        #[arg(long, default_value_t = 30)]
        busy_timeout: u64,
        /// Where to keep the safety archive of the database as it was before the merge
        /// (default: the backup directory).
        #[arg(long, conflicts_with = "no_safety_copy")]
        safety_dir: Option<PathBuf>,
        /// Do not write a safety archive first (the merge is still one transaction).
        #[arg(long)]
        no_safety_copy: bool,
        #[command(flatten)]
        crypt: EncryptArgs,
    },
    /// Restore an archive or SQL dump to a database file: guarded, verified before the swap, atomic.
    #[command(
        after_help = "Examples:\n  litevault restore app-20261121T101500Z.tar.zst restored.db\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite --dry-run\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite\n  litevault restore app.sql.zst new.db            # also .sql.gz, plain .sql\n  litevault restore dump-from-sqlite3.sql new.db  # a foreign dump, loaded as untrusted SQL\n  litevault restore s3://my-bucket/prod/app/app-20261201T101500Z.tar.zst app.db --overwrite\n  litevault restore --latest --dir s3://my-bucket/prod/app app.db --overwrite   # newest backup of `app`\n  litevault restore --latest --dir /backups --at 2026-12-01T09:00:00Z new.db    # also --at \"2h ago\"\n  litevault restore old-sqlite.tar.zst app.db --reindex   # rebuild the indexes the checks dispute\n  litevault restore app-20261201T101500Z.tar.zst.age new.db --identity key.txt   # encrypted (age)\n  litevault restore app-20261201T101500Z.tar.zst new.db --files-to /srv/app   # + /srv/app/uploads/...\n\nAn existing database is replaced only with --overwrite, after a safety archive of it is\nwritten to the backup directory. A database open in other processes is restored through\nSQLite, so they see the new content on their next transaction; it is never swapped from\nunder them."
    )]
    Restore {
        /// The archive or SQL dump to restore (a path or s3://bucket/key; not with --latest),
        /// then the database file to create or replace.
        #[arg(required = true, num_args = 1..=2, value_name = "[ARCHIVE] DB")]
        paths: Vec<PathBuf>,
        /// Restore the newest backup (archive or dump) of --name in --dir.
        #[arg(long)]
        latest: bool,
        /// With --latest: the name of the backups (default: the target's file stem).
        #[arg(long, requires = "latest")]
        name: Option<String>,
        /// With --latest: the location to look in (default: $LITEVAULT_DIR, else
        /// ~/.local/share/litevault/backups).
        #[arg(long, requires = "latest", value_name = "LOCATION")]
        dir: Option<PathBuf>,
        /// With --latest: the newest backup created at or before TIME (RFC 3339, or "2h ago").
        #[arg(long, requires = "latest", value_name = "TIME")]
        at: Option<String>,
        /// Replace an existing database (a safety archive of it is kept first).
        #[arg(long)]
        overwrite: bool,
        /// Print what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow an archive whose schema version (user_version) is newer than the database's.
        #[arg(long)]
        allow_newer_schema: bool,
        /// Run quick_check instead of integrity_check before the swap.
        #[arg(long)]
        quick: bool,
        /// Rebuild indexes in the extracted copy before it goes in place: the ones
        /// integrity_check disputes (then the checks run again), or `--reindex all`. For a
        /// backup whose indexes disagree with their tables under this SQLite while every row is
        /// intact (e.g. written by an older SQLite). Table rows are never changed.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "disputed", value_name = "WHICH")]
        reindex: Option<ReindexArg>,
        /// Where to keep the safety archive (default: the backup directory).
        #[arg(long)]
        safety_dir: Option<PathBuf>,
        /// Seconds to wait for other connections' locks on a live database.
        #[arg(long, default_value_t = 30)]
        busy_timeout: u64,
        #[command(flatten)]
        crypt: EncryptArgs,
        /// Put the archive's files (backup --include) under OUT: OUT/<dir name>/..., each
        /// through a hidden temp file, fsync and rename, with its mode (permission bits) and
        /// mtime, once the database passed its checks. An existing file is replaced only with
        /// --overwrite; a path through a symlink or outside OUT is refused before anything is
        /// written. Without it, the files are not restored (the report says how many).
        #[arg(long, value_name = "OUT")]
        files_to: Option<PathBuf>,
    },
}

/// Progress bars on a terminal; nothing otherwise.
struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for BarProgress {
    fn begin(&self, phase: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::new(t);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = ProgressBar::new_spinner();
                b.enable_steady_tick(Duration::from_millis(120));
                b
            }
        };
        bar.set_message(phase.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }
    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(b) = slot.as_ref() {
                b.inc(bytes);
            }
        }
    }
    fn end(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(b) = slot.take() {
                b.finish_and_clear();
            }
        }
    }
}

/// Writes to stdout; a closed pipe (e.g. `| head`) ends the program quietly with success.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// Ctrl-C and SIGTERM: the signals are blocked in every thread and taken by one thread, which
/// aborts the S3 multipart uploads in progress (so no incomplete upload is left behind),
/// removes this process's temp files and exits with 128 + the signal's number (130, 143). A
/// restore into a live database that is cut short is rolled back by SQLite's journal.
fn handle_signals() {
    // SAFETY: plain libc calls on a local, initialised signal set, before any other thread
    // exists (threads spawned later inherit the mask).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        let set = set;
        let _ = std::thread::Builder::new().name("signals".into()).spawn(move || {
            let mut sig: libc::c_int = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                let aborted = litevault::location::s3::abort_active_uploads();
                let removed = litevault::fsutil::remove_own_temps();
                let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!(
                    "interrupted ({name}): aborted {aborted} upload(s) in progress, removed {removed} temp file(s); nothing was published or replaced"
                );
                std::process::exit(128 + sig);
            }
        });
    }
}

/// `--reindex` takes an optional value (`all`, `disputed`), so clap would read the path after a
/// bare `--reindex` as that value (`restore --reindex app.tar.zst app.db` would fail). A bare
/// `--reindex` followed by anything but a value or an option is therefore `--reindex=disputed`.
fn bare_reindex_means_disputed(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let args: Vec<std::ffi::OsString> = args.collect();
    let mut out = Vec::with_capacity(args.len());
    let mut options_end = false;
    for (i, arg) in args.iter().enumerate() {
        options_end |= arg == "--";
        let next = args.get(i + 1).and_then(|n| n.to_str());
        let takes_next = matches!(next, Some("all" | "disputed")) || next.is_none_or(|n| n.starts_with('-'));
        if !options_end && arg == "--reindex" && !takes_next {
            out.push("--reindex=disputed".into());
        } else {
            out.push(arg.clone());
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(bare_reindex_means_disputed(std::env::args_os()));
    if let Command::Serve {
        config,
        check,
        log_format,
    } = &cli.command
    {
        let format = match log_format {
            LogFormatArg::Text => litevault::serve::LogFormat::Text,
            LogFormatArg::Json => litevault::serve::LogFormat::Json,
        };
        return ExitCode::from(serve_cmd::main(config, *check, format, cli.json));
    }
    // Parsed before any thread exists, so the signal mask set here is every thread's.
    handle_signals();
    let progress: Box<dyn Progress> = if !cli.quiet && !cli.json && std::io::stderr().is_terminal() {
        Box::new(BarProgress {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(litevault::NoProgress)
    };
    match run(&cli, progress.as_ref()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = err.class().exit_code();
            if cli.json {
                out(&json(&litevault::error::ErrorReport::from(&err)));
            }
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

/// "N checks passed" and, when some were not run, ", M skipped (...)".
fn passed_and_skipped(checks: &[litevault::Check]) -> String {
    let skipped: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == litevault::db::CheckStatus::Skipped)
        .map(|c| c.name.as_str())
        .collect();
    let passed = checks.iter().filter(|c| !c.failed()).count() - skipped.len();
    if skipped.is_empty() {
        format!("{passed} checks passed")
    } else {
        format!(
            "{passed} checks passed, {} skipped ({})",
            skipped.len(),
            skipped.join(", ")
        )
    }
}

fn run(cli: &Cli, progress: &dyn Progress) -> Result<u8, Error> {
    install_identities(cli)?;
    match &cli.command {
        Command::Backup {
            db,
            output,
            dir,
            name,
            incremental,
            full_every,
            method,
            compression,
            level,
            allow_corrupt,
            check_fts,
            threads,
            priority,
            no_checkpoint,
            overwrite,
            format,
            tables,
            exclude_tables,
            crypt,
            include,
        } => {
            if matches!(priority, PriorityArg::Low) {
                litevault::priority::lower();
            }
            litevault::archive::set_compression_threads(*threads);
            let opts = BackupOptions {
                no_checkpoint: *no_checkpoint,
                output: output.clone(),
                dir: dir.clone(),
                name: name.clone(),
                incremental: *incremental,
                full_every: *full_every,
                method: match method {
                    MethodArg::Pages => Method::Pages,
                    MethodArg::Vacuum => Method::Vacuum,
                },
                compression: match compression {
                    CompressionArg::Zstd => Compression::Zstd,
                    CompressionArg::Gzip => Compression::Gzip,
                    CompressionArg::None => Compression::None,
                },
                level: *level,
                allow_corrupt: *allow_corrupt,
                check_fts: *check_fts,
                overwrite: *overwrite,
                format: match format {
                    FormatArg::Archive => litevault::backup::Format::Archive,
                    FormatArg::Sql => litevault::backup::Format::Sql,
                },
                selection: litevault::dump::write::Selection {
                    tables: tables.clone(),
                    exclude: exclude_tables.clone(),
                },
                encrypt: crypt.encryption(cli)?,
                include: include.clone(),
                ..Default::default()
            };
            let r = litevault::backup(db, &opts, progress)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet {
                let mut s = format!(
                    "backed up {} -> {}\n  {} database, {} {} ({}), {}{}, {}, {:.1} s\n",
                    r.source.display(),
                    r.archive.display(),
                    HumanBytes(r.db_size),
                    HumanBytes(r.archive_size),
                    if r.kind == "sql" { "SQL dump" } else { "archive" },
                    match r.compression {
                        litevault::Compression::None => "uncompressed".to_string(),
                        c => c.to_string(),
                    },
                    count(r.tables as u64, "table", "tables"),
                    if r.other_tables > 0 {
                        format!(" (and {} views, shadow or internal tables)", r.other_tables)
                    } else {
                        String::new()
                    },
                    count(r.rows, "row", "rows"),
                    r.duration_ms as f64 / 1000.0
                );
                if r.files > 0 {
                    s += &format!(
                        "  {} files and directories beside it ({})\n",
                        r.files,
                        HumanBytes(r.files_bytes)
                    );
                }
                for v in &r.files_vanished {
                    s += &format!("  left out (deleted during the backup): {}\n", clean(v));
                }
                if r.restarts > 0 {
                    s += &format!(
                        "  snapshot restarted {} times because of concurrent writes\n",
                        r.restarts
                    );
                }
                if r.corrupt {
                    s += "  warning: the database failed quick_check; archived anyway and marked corrupt\n";
                }
                if cli.verbose {
                    s += &format!(
                        "  sha256 {} (archive)\n  sha256 {} (database)\n",
                        r.archive_sha256, r.database_sha256
                    );
                }
                out(&s);
            }
            Ok(exit::OK)
        }
        Command::List { dir } => {
            let dir = dir.clone().unwrap_or_else(litevault::default_backup_dir);
            let items = litevault::list(&dir)?;
            if cli.json {
                out(&json(&items));
            } else if !cli.quiet {
                out(&render_list(&dir, &items, cli.verbose));
            }
            Ok(exit::OK)
        }
        Command::Copy { sources, dest } => {
            let r = litevault::copy::copy(sources, dest, progress)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet {
                let mut s = String::new();
                for c in &r.copied {
                    s += &format!(
                        "copied {} -> {} ({}, checked)\n",
                        c.source.display(),
                        c.destination.display(),
                        HumanBytes(c.size)
                    );
                }
                out(&s);
            }
            Ok(exit::OK)
        }
        Command::Serve { .. } => unreachable!("serve runs from main"),
        Command::Prune {
            dir,
            name,
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
            dry_run,
            force,
        } => {
            let keep_within_secs = match keep_within {
                Some(d) => Some(
                    litevault::prune::parse_duration(d)
                        .map_err(|m| Error::InvalidOption(format!("--keep-within: {m}")))?,
                ),
                None => None,
            };
            let opts = litevault::prune::PruneOptions {
                policy: litevault::prune::Policy {
                    keep_last: *keep_last,
                    keep_hourly: *keep_hourly,
                    keep_daily: *keep_daily,
                    keep_weekly: *keep_weekly,
                    keep_monthly: *keep_monthly,
                    keep_yearly: *keep_yearly,
                    keep_within_secs,
                },
                name: name.clone(),
                dry_run: *dry_run,
                force: *force,
            };
            let dir = dir.clone().unwrap_or_else(litevault::default_backup_dir);
            let r = litevault::prune::prune(&dir, &opts)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet {
                out(&render_prune(&r, cli.verbose));
            }
            Ok(exit::OK)
        }
        Command::Show { archive } => {
            let m = litevault::read_manifest(archive)?;
            // A stored archive shorter than its manifest records was cut short.
            let truncated = match m.body_size {
                Some(_) => {
                    let size = litevault::location::object_size(archive)?;
                    let encrypted = litevault::crypt::is_encrypted_file(archive);
                    litevault::list::ArchiveSummary::is_truncated(&m, size, encrypted).then_some(size)
                }
                None => None,
            };
            if cli.json {
                // The manifest, plus the count of its files when it has some.
                let mut v = serde_json::to_value(&m).map_err(|e| Error::InvalidOption(e.to_string()))?;
                if let (Some(obj), false) = (v.as_object_mut(), m.files.is_empty()) {
                    let (count, bytes) = litevault::files::totals(&m.files);
                    obj.insert(
                        "files_summary".into(),
                        serde_json::json!({ "count": count, "bytes": bytes }),
                    );
                }
                if let (Some(obj), Some(size)) = (v.as_object_mut(), truncated) {
                    obj.insert("truncated".into(), serde_json::json!({ "stored_bytes": size }));
                }
                out(&json(&v));
            } else if !cli.quiet {
                let mut text = String::new();
                if let Some(size) = truncated {
                    text += &format!(
                        "TRUNCATED: {} stored of at least {}: this archive was cut short and cannot be restored\n",
                        HumanBytes(size),
                        HumanBytes(m.body_size.unwrap_or(0))
                    );
                }
                text += &render_manifest(&m);
                out(&text);
            }
            Ok(exit::OK)
        }
        Command::Verify {
            path,
            quick,
            temp_dir,
            reindex,
        } => {
            let opts = VerifyOptions {
                quick: *quick,
                temp_dir: temp_dir.clone(),
                reindex: ReindexArg::to_lib(*reindex),
            };
            let r = litevault::verify(path, &opts, progress)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet || !r.ok {
                let mut s = format!("verify {} ({})\n", r.path.display(), r.kind);
                s += &render_checks(&r.checks, cli.verbose || !r.ok);
                if !r.reindexed.is_empty() {
                    s += &format!(
                        "rebuilt {} index(es) in the checked copy: {} (table rows untouched)\n",
                        r.reindexed.len(),
                        clean(&r.reindexed.join(", "))
                    );
                }
                let failed = r.checks.iter().filter(|c| c.failed()).count();
                s += &if r.ok {
                    format!("ok: {}\n", passed_and_skipped(&r.checks))
                } else {
                    format!("FAILED: {failed} of {} checks failed\n", r.checks.len())
                };
                out(&s);
            }
            Ok(if r.ok { exit::OK } else { exit::CORRUPT })
        }
        Command::Merge {
            sources,
            target,
            dry_run,
            keys,
            create_missing_tables,
            busy_timeout,
            safety_dir,
            no_safety_copy,
            crypt,
        } => {
            let keys = match keys {
                Some(k) => {
                    let text = std::fs::read_to_string(k).map_err(|e| Error::io("read", k, e))?;
                    litevault::merge::parse_keys(&text)
                        .map_err(|m| Error::InvalidOption(format!("{}: {m}", k.display())))?
                }
                None => Default::default(),
            };
            let opts = litevault::merge::MergeOptions {
                dry_run: *dry_run,
                keys,
                create_missing_tables: *create_missing_tables,
                busy_timeout: Duration::from_secs(*busy_timeout),
                temp_dir: None,
                safety_copy: !*no_safety_copy,
                safety_dir: safety_dir.clone(),
                encrypt: crypt.encryption(cli)?,
            };
            let r = litevault::merge::merge(sources, target, &opts, progress)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet {
                out(&render_merge(&r));
            }
            Ok(exit::OK)
        }
        Command::Restore {
            paths,
            latest,
            name,
            dir,
            at,
            overwrite,
            dry_run,
            allow_newer_schema,
            quick,
            reindex,
            safety_dir,
            busy_timeout,
            crypt,
            files_to,
        } => {
            let (archive, db) = match (paths.as_slice(), *latest) {
                ([db], true) => {
                    let dir = dir.clone().unwrap_or_else(litevault::default_backup_dir);
                    let name = name.clone().unwrap_or_else(|| litevault::location::name_of(db));
                    let loc = litevault::location::open(&dir)?;
                    let at = match at {
                        Some(t) => Some(
                            litevault::chain::parse_at(t)
                                .map_err(|m| Error::InvalidOption(format!("--at: {m}")))?,
                        ),
                        None => None,
                    };
                    let newest = litevault::location::latest_required(loc.as_ref(), &name, at)?;
                    (loc.object_path(&newest), db.clone())
                }
                ([archive, db], false) => (archive.clone(), db.clone()),
                (_, true) => {
                    return Err(Error::InvalidOption(
                        "with --latest give only the database (the archive is found in --dir)".into(),
                    ))
                }
                (_, false) => {
                    return Err(Error::InvalidOption(
                        "give the archive and the database (or --latest and the database)".into(),
                    ))
                }
            };
            let (archive, db) = (&archive, &db);
            let opts = RestoreOptions {
                overwrite: *overwrite,
                allow_newer_schema: *allow_newer_schema,
                quick: *quick,
                reindex: ReindexArg::to_lib(*reindex),
                safety_dir: safety_dir.clone(),
                busy_timeout: Duration::from_secs(*busy_timeout),
                encrypt: crypt.encryption(cli)?,
                files_to: files_to.clone(),
            };
            if *dry_run {
                let plan = litevault::plan_restore(archive, db, &opts)?;
                if cli.json {
                    out(&json(&plan));
                } else if !cli.quiet {
                    out(&render_plan(&plan));
                }
                return Ok(exit::OK);
            }
            let r = litevault::restore(archive, db, &opts, progress)?;
            if cli.json {
                out(&json(&r));
            } else if !cli.quiet {
                let mut s = format!(
                    "restored {} -> {} ({}, {:.1} s)\n",
                    r.plan.archive.display(),
                    r.plan.target.display(),
                    strategy_text(r.plan.strategy),
                    r.duration_ms as f64 / 1000.0
                );
                if let Some(p) = &r.safety_archive {
                    s += &format!("  previous database kept in {}\n", p.display());
                }
                for p in &r.moved_aside {
                    s += &format!("  moved aside: {}\n", p.display());
                }
                if let Some(f) = &r.plan.files {
                    s += &format!(
                        "  {} files and directories ({}) restored under {}{}\n",
                        r.files_restored,
                        HumanBytes(f.bytes),
                        f.out.display(),
                        if f.replaces > 0 {
                            format!(", {} replaced", f.replaces)
                        } else {
                            String::new()
                        }
                    );
                }
                if !r.reindexed.is_empty() {
                    s += &format!(
                        "  rebuilt {} index(es) in the restored copy: {} (table rows untouched)\n",
                        r.reindexed.len(),
                        clean(&r.reindexed.join(", "))
                    );
                }
                for w in &r.plan.warnings {
                    s += &format!("  warning: {w}\n");
                }
                s += &format!("  {} before the swap\n", passed_and_skipped(&r.checks));
                if cli.verbose {
                    s += &render_checks(&r.checks, true);
                }
                out(&s);
            }
            Ok(exit::OK)
        }
    }
}

/// "1 table", "3 tables".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Text from an archive (untrusted) made safe for a terminal: control characters escaped.
fn clean(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn strategy_text(s: litevault::Strategy) -> &'static str {
    match s {
        litevault::Strategy::Create => "new file, atomic rename",
        litevault::Strategy::Live => "copied into the existing database through SQLite",
        litevault::Strategy::Swap => "old file kept aside, atomic rename",
    }
}

fn render_checks(checks: &[Check], all: bool) -> String {
    let mut s = String::new();
    for c in checks {
        if !all && c.status == CheckStatus::Pass {
            continue;
        }
        let tag = match c.status {
            CheckStatus::Pass => "ok  ",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skipped => "skip",
        };
        if c.findings.is_empty() {
            s += &format!("  {tag} {}: {}\n", c.name, clean(&c.detail));
        } else {
            // One line per object and class (counted), then what to do.
            let class = c.class.map(|k| format!(" ({k})")).unwrap_or_default();
            s += &format!("  {tag} {}{class}:\n", c.name);
            for f in &c.findings {
                s += &format!("         {}\n", clean(&f.to_string()));
            }
            if c.truncated {
                s += "         (the check stopped at its limit: there may be more)\n";
            }
        }
        if let Some(action) = &c.action {
            s += &format!("         what to do: {}\n", clean(action));
        }
    }
    s
}

fn render_merge(r: &litevault::merge::MergeReport) -> String {
    let mut s = format!(
        "{} {} backup(s) into {}\n",
        if r.dry_run { "dry run: merge" } else { "merged" },
        r.sources.len(),
        r.target.display()
    );
    let mut rows = vec![[
        "TABLE".to_string(),
        "IDENTITY".into(),
        "INCOMING".into(),
        "INSERTED".into(),
        "DUPLICATES".into(),
        "REMAPPED".into(),
        "ORPHANS".into(),
        "SKIPPED".into(),
    ]];
    for t in &r.tables {
        rows.push([
            clean(&t.table),
            t.identity.clone(),
            t.incoming.to_string(),
            t.inserted.to_string(),
            t.duplicates.to_string(),
            t.remapped.to_string(),
            t.orphans.to_string(),
            t.skipped_orphans.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s += &format!("  {}\n", line.join("  ").trim_end());
    }
    for w in &r.warnings {
        s += &format!("  warning: {}\n", clean(w));
    }
    if r.dry_run {
        s += "nothing was changed\n";
    } else if let Some(p) = &r.safety_archive {
        s += &format!("database as it was before the merge kept in {}\n", p.display());
    }
    s
}

fn render_prune(r: &litevault::prune::PruneReport, verbose: bool) -> String {
    let mut s = String::new();
    let mut group = "";
    for v in &r.verdicts {
        if v.group != group {
            group = &v.group;
            s += &format!("{group}:\n");
        }
        if v.keep || verbose || r.dry_run {
            s += &format!(
                "  {} {}  {}  ({})\n",
                if v.keep { "keep  " } else { "remove" },
                v.created_at,
                v.name,
                v.reasons.join(", ")
            );
        }
    }
    for n in &r.not_managed {
        s += &format!("  (left alone: {n}, not a name litevault gives)\n");
    }
    let removed = r.verdicts.iter().filter(|v| !v.keep).count();
    let kept = r.verdicts.len() - removed;
    s += &if r.dry_run {
        format!(
            "dry run: would keep {kept} and remove {removed} backups ({}) in {}\n",
            HumanBytes(r.freed_bytes),
            r.location
        )
    } else {
        format!(
            "kept {kept}, removed {} backups ({}) in {}\n",
            r.deleted.len(),
            HumanBytes(r.freed_bytes),
            r.location
        )
    };
    for c in &r.cleaned {
        s += &format!("  {c}\n");
    }
    s
}

fn render_list(dir: &std::path::Path, items: &[litevault::ArchiveSummary], verbose: bool) -> String {
    if items.is_empty() {
        return format!("no archives or dumps in {}\n", dir.display());
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "CREATED".into(),
        "SOURCE".into(),
        "DB SIZE".into(),
        "FILE SIZE".into(),
        "KIND".into(),
    ]];
    for it in items {
        let name = it
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &it.manifest {
            Some(m) => rows.push([
                name,
                clean(&m.created_at),
                clean(&m.source),
                HumanBytes(m.db_size).to_string(),
                HumanBytes(it.archive_size).to_string(),
                format!(
                    "{}{}",
                    match (m.kind.as_str(), &m.parent) {
                        ("sql", _) => "sql dump".to_string(),
                        ("incremental", Some(p)) => format!(
                            "incremental, link {} ({} pages) of {}",
                            m.chain_depth,
                            m.changed_pages.unwrap_or(0),
                            clean(&p.name)
                        ),
                        _ => format!("archive ({})", m.method),
                    },
                    if m.corrupt { ", corrupt" } else { "" }
                ) + &if it.truncated {
                    format!(
                        ", TRUNCATED ({} of at least {})",
                        HumanBytes(it.archive_size),
                        HumanBytes(m.body_size.unwrap_or(0))
                    )
                } else {
                    String::new()
                } + &if m.files.is_empty() {
                    String::new()
                } else {
                    let (count, bytes) = litevault::files::totals(&m.files);
                    format!(", {count} files ({})", HumanBytes(bytes))
                } + if it.encrypted { ", encrypted" } else { "" },
            ]),
            None if it.encrypted && it.error.is_none() => rows.push([
                name.clone(),
                litevault::prune::policy::parse_backup_name(&name)
                    .map(|(_, t)| litevault::location::format_time(t))
                    .unwrap_or_else(|| "-".into()),
                "(encrypted: --identity to read)".into(),
                "-".into(),
                HumanBytes(it.archive_size).to_string(),
                "encrypted".into(),
            ]),
            None => rows.push([
                name,
                "-".into(),
                format!("unreadable: {}", clean(&it.error.clone().unwrap_or_default())),
                "-".into(),
                HumanBytes(it.archive_size).to_string(),
                "-".into(),
            ]),
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s += line.join("  ").trim_end();
        s.push('\n');
    }
    if verbose {
        s += &format!("{} archives in {}\n", items.len(), dir.display());
    }
    s
}

fn render_manifest(m: &litevault::Manifest) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s += &format!("{k:<24}{v}\n");
    kv("format", m.format.clone());
    kv(
        "kind",
        if m.kind == "sql" {
            "sql (SQL dump)".into()
        } else {
            clean(&m.kind)
        },
    );
    if let Some(p) = &m.parent {
        kv(
            "parent",
            format!(
                "{} ({}), link {} of its chain, {} changed pages",
                clean(&p.name),
                clean(&p.created_at),
                m.chain_depth,
                m.changed_pages.unwrap_or(0)
            ),
        );
    }
    if let Some(r) = &m.full_reason {
        kv("full because", clean(r));
    }
    kv("created_at", clean(&m.created_at));
    kv("source", clean(&m.source));
    kv("host", clean(&m.host));
    kv("tool_version", clean(&m.tool_version));
    kv("sqlite_version", clean(&m.sqlite_version));
    kv("method", m.method.to_string());
    kv(
        "compression",
        format!(
            "{}{}",
            m.compression,
            m.compression_level
                .map(|l| format!(" (level {l})"))
                .unwrap_or_default()
        ),
    );
    kv(
        "db_size",
        format!("{} ({} bytes)", HumanBytes(m.db_size), m.db_size),
    );
    kv("page_size", m.db.page_size.to_string());
    kv("page_count", m.db.page_count.to_string());
    kv("freelist_count", m.db.freelist_count.to_string());
    kv(
        "journal_mode",
        clean(&format!(
            "{} (source: {})",
            m.db.journal_mode, m.source_journal_mode
        )),
    );
    kv("encoding", clean(&m.db.encoding));
    kv("user_version", m.db.user_version.to_string());
    kv("application_id", m.db.application_id.to_string());
    kv("auto_vacuum", clean(&m.db.auto_vacuum));
    kv("quick_check", clean(&m.quick_check));
    kv("foreign_key_violations", m.foreign_key_violations.to_string());
    kv("snapshot_restarts", m.snapshot_restarts.to_string());
    if !m.files.is_empty() {
        let (count, bytes) = litevault::files::totals(&m.files);
        kv(
            "files",
            format!(
                "{count} files and directories, {} ({bytes} bytes)",
                HumanBytes(bytes)
            ),
        );
    }
    s += &format!("tables ({}):\n", m.db.tables.len());
    for t in &m.db.tables {
        let rows = t.rows.map(|n| format!("{n} rows")).unwrap_or_else(|| "-".into());
        s += &format!("  {:<40} {:<8} {rows}\n", clean(&t.name), clean(&t.kind));
    }
    s
}

fn render_plan(p: &litevault::RestorePlan) -> String {
    let mut s = format!(
        "dry run: restore {} -> {}\n",
        p.archive.display(),
        p.target.display()
    );
    if p.manifest.kind == "sql" && p.manifest.tool_version.is_empty() {
        s += &format!(
            "  source: a foreign SQL dump (no manifest; about {} once loaded)\n",
            HumanBytes(p.manifest.db_size)
        );
    } else {
        s += &format!(
            "  {}: created {} from {} ({}, user_version {})\n",
            if p.manifest.kind == "sql" {
                "dump"
            } else {
                "archive"
            },
            clean(&p.manifest.created_at),
            clean(&p.manifest.source),
            HumanBytes(p.manifest.db_size),
            p.manifest.db.user_version
        );
    }
    match &p.replaces {
        Some(t) => {
            s += &format!(
                "  replaces: existing {} ({}{})\n",
                if t.is_database {
                    "database"
                } else {
                    "file (not a readable database)"
                },
                HumanBytes(t.size),
                t.user_version
                    .map(|v| format!(", user_version {v}"))
                    .unwrap_or_default()
            );
            if let Some(u) = &t.in_use {
                s += &format!("  in use: {u}\n");
            }
        }
        None => s += "  replaces: nothing (new file)\n",
    }
    s += &format!("  strategy: {}\n", strategy_text(p.strategy));
    if let Some(d) = &p.safety_dir {
        s += &format!("  safety archive of the current database into: {}\n", d.display());
    }
    for f in &p.stale_files {
        s += &format!("  would move aside: {}\n", f.display());
    }
    if let Some(f) = &p.files {
        s += &format!(
            "  files: {} entries ({}) under {}{}\n",
            f.count,
            HumanBytes(f.bytes),
            f.out.display(),
            if f.replaces > 0 {
                format!(", replacing {} existing", f.replaces)
            } else {
                String::new()
            }
        );
        const SHOWN: usize = 20;
        for e in f.entries.iter().take(SHOWN) {
            s += &format!(
                "    {} {}{}\n",
                match e.kind {
                    litevault::files::FileKind::File => "file",
                    litevault::files::FileKind::Dir => "dir ",
                    litevault::files::FileKind::Symlink => "link",
                },
                clean(&e.path.to_string_lossy()),
                if e.exists && e.kind != litevault::files::FileKind::Dir {
                    " (replaces the existing one)"
                } else {
                    ""
                }
            );
        }
        if f.entries.len() > SHOWN {
            s += &format!(
                "    ... and {} more (--json lists them all)\n",
                f.entries.len() - SHOWN
            );
        }
    }
    s += &format!("  checks before the swap: {}\n", p.checks.join(", "));
    s += &format!(
        "  space: {} needed, {} free\n",
        HumanBytes(p.space_needed),
        HumanBytes(p.space_available)
    );
    for w in &p.warnings {
        s += &format!("  warning: {w}\n");
    }
    s += "nothing was changed\n";
    s
}
