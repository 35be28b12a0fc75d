//! The command line: the global flags and the subcommands (one module each, with its arguments,
//! the options they become and the rendering of its report), the progress bar, the shared
//! renderers, signals, and the dispatch from a parsed command to its module.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use litevault::{
    BackupOptions, Check, CheckStatus, Compression, Context, Error, Method, Progress, Reindex,
    RestoreOptions, VerifyOptions,
};

mod backup;
mod copy;
mod list;
mod merge;
mod prune;
mod restore;
#[cfg(feature = "serve")]
mod serve;
mod show;
mod verify;

/// Exit codes, as documented in the README.
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
pub(crate) struct Cli {
    /// Print the report as JSON on stdout (for scripts).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// Print more detail (every table, every check).
    #[arg(short, long, global = true)]
    pub(crate) verbose: bool,
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
    pub(crate) command: Command,
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
    fn encryption(&self, cli: &Cli) -> Result<Option<litevault::format::crypt::Encryption>, Error> {
        let to =
            litevault::format::crypt::Encryption::to_recipients(&self.encrypt_to, &self.encrypt_to_file)?;
        match (to, &cli.passphrase_file) {
            (Some(_), Some(_)) => Err(Error::InvalidOption(
                "--passphrase-file cannot be combined with --encrypt-to/--encrypt-to-file (age encrypts to a passphrase alone)"
                    .into(),
            )),
            (Some(to), None) => Ok(Some(to)),
            (None, Some(p)) => Ok(Some(litevault::format::crypt::Encryption::with_passphrase_file(p)?)),
            (None, None) => Ok(None),
        }
    }
}

/// The context every command runs with: the keys that encrypted backups are read with,
/// --identity (else $LITEVAULT_IDENTITY) and --passphrase-file.
fn context(cli: &Cli) -> Result<Context, Error> {
    let mut ids = litevault::format::crypt::Identities::new();
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
    Ok(Context::new().with_identities(ids))
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

#[cfg(feature = "serve")]
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Take a consistent snapshot of a (live) database into a compressed, checksummed archive.
    #[command(
        after_help = "Examples:\n  litevault backup app.db\n  litevault backup app.db -o /backups/app.tar.zst\n  litevault backup app.db --dir /backups --method vacuum --compression gzip\n  litevault backup app.db --format sql                          # app-<stamp>.sql.zst\n  litevault backup app.db --format sql --compression none -o history/app.sql\n  litevault backup app.db --format sql --table notes --table tags\n  litevault backup app.db --dir s3://my-bucket/prod/app          # S3 (AWS_* variables, ~/.aws)\n  litevault backup app.db -o s3://my-bucket/prod/app/pre-migration.tar.zst\n  litevault backup app.db --dir /backups --incremental --full-every 24   # changed pages only\n  litevault backup app.db --encrypt-to age1...                  # app-<stamp>.tar.zst.age (age)\n  litevault backup app.db --encrypt-to-file recipients.txt --dir s3://my-bucket/prod/app\n  litevault backup app.db --include uploads --include exports   # + files/uploads/..., files/exports/...\n\nDefault location: --dir, else $LITEVAULT_DIR, else ~/.local/share/litevault/backups,\nas <name>-<YYYYMMDDTHHMMSSZ>.tar.zst (.sql.zst, .sql.gz or .sql for --format sql);\nthe name is the database file's stem unless --name says otherwise."
    )]
    Backup(backup::Args),
    /// List the archives in the backup directory (reads only each archive's manifest).
    #[command(
        after_help = "Examples:\n  litevault list\n  litevault list --dir /backups --json\n  litevault list --dir s3://my-bucket/prod/app"
    )]
    List(list::Args),
    /// Copy archives to another location, each under its own name (never replacing one), checked
    /// on arrival (the copy is read back: same size, same SHA-256).
    #[command(
        after_help = "Examples:\n  litevault copy ~/.local/share/litevault/backups/app-20261201T101500Z.tar.zst s3://my-bucket/prod/app\n  litevault copy /backups/app-*.tar.zst s3://my-bucket/prod/app   # push several\n  litevault copy s3://my-bucket/prod/app/app-20261201T101500Z.tar.zst /restore-area   # pull one"
    )]
    Copy(copy::Args),
    /// Delete old backups by retention policy (restic's --keep-* rules), per name.
    #[command(
        after_help = "Examples:\n  litevault prune --dir /backups --keep-daily 7 --keep-weekly 4 --dry-run\n  litevault prune --dir s3://my-bucket/prod/app --name app --keep-last 3 --keep-within 30d --json\n\nEach --keep-* policy keeps the newest backup in each of its last N periods (UTC) that have one;\npolicies add up; --keep-within keeps everything that much younger than the newest backup.\nBackups are grouped by name (<name>-<stamp>...); safety archives (<name>-pre-restore-...,\n<name>-pre-merge-...) form groups of their own. Objects litevault did not name are never deleted.\nprune also aborts litevault's incomplete uploads there that are older than a day."
    )]
    Prune(prune::Args),
    #[cfg(feature = "serve")]
    /// Run the daemon: scheduled backups, retention, restore drills, an HTTP API and metrics.
    #[command(
        after_help = "Examples:\n  litevault serve --config litevault.toml            # foreground; logs to stderr\n  litevault serve --config litevault.toml --check    # check the file and exit\n  LITEVAULT_TOKEN=$(cat /etc/litevault/token) litevault serve --config /etc/litevault/litevault.toml --log-format json\n\nSignals: SIGTERM or SIGINT stop it (running jobs get `shutdown_grace`, 8 s by default, then are\ncancelled: uploads aborted, temp files removed; exit 0); SIGHUP reloads the configuration (a bad\nfile keeps the running one, and the log says why). docs/daemon.md documents the file and the API."
    )]
    Serve(serve::Args),
    /// Print an archive's or SQL dump's manifest.
    #[command(
        after_help = "Examples:\n  litevault show app-20261121T101500Z.tar.zst --json\n  litevault show history/app.sql"
    )]
    Show(show::Args),
    /// Check an archive or SQL dump (checksums, manifest, SQLite integrity) or a database file.
    #[command(
        after_help = "Examples:\n  litevault verify app-20261121T101500Z.tar.zst\n  litevault verify app.db --quick\n  litevault verify app-20261121T101500Z.sql.zst     # rebuilds it in a temp file, proves the round trip\n  litevault verify app-20261121T101500Z.tar.zst --reindex   # rebuild disputed indexes in the temp copy, check again\n\nA failed integrity check says what it found, once per object: storage (damaged pages), index\n(an index disagrees with its table; the rows are intact: --reindex), fts (a full-text index\nno longer matches its content), constraint (rows break their table's constraints).\n\nExit code 3 when any check fails."
    )]
    Verify(verify::Args),
    /// Import other backups (archives or SQL dumps) into an existing database: no duplicates,
    /// integer ids remapped with their foreign keys, one transaction.
    #[command(
        after_help = "Examples:\n  litevault merge teammate.tar.zst app.db --dry-run   # per-table plan, changes nothing\n  litevault merge teammate.sql.zst app.db\n  litevault merge a.tar.zst b.sql app.db              # several sources in one go\n  litevault merge teammate.tar.zst app.db --keys merge.toml --json\n\nRow identity: the keys file's columns, else a non-integer PRIMARY KEY, else the first UNIQUE\nconstraint, else the row's content. Keys file lines: table = [\"column\", ...]\n\nA safety archive of the database as it was is written to the backup directory first\n(<stem>-pre-merge-<stamp>.tar.zst; kept only if the merge changed something)."
    )]
    Merge(merge::Args),
    /// Restore an archive or SQL dump to a database file: guarded, verified before the swap, atomic.
    #[command(
        after_help = "Examples:\n  litevault restore app-20261121T101500Z.tar.zst restored.db\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite --dry-run\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite\n  litevault restore app.sql.zst new.db            # also .sql.gz, plain .sql\n  litevault restore dump-from-sqlite3.sql new.db  # a foreign dump, loaded as untrusted SQL\n  litevault restore s3://my-bucket/prod/app/app-20261201T101500Z.tar.zst app.db --overwrite\n  litevault restore --latest --dir s3://my-bucket/prod/app app.db --overwrite   # newest backup of `app`\n  litevault restore --latest --dir /backups --at 2026-12-01T09:00:00Z new.db    # also --at \"2h ago\"\n  litevault restore old-sqlite.tar.zst app.db --reindex   # rebuild the indexes the checks dispute\n  litevault restore app-20261201T101500Z.tar.zst.age new.db --identity key.txt   # encrypted (age)\n  litevault restore app-20261201T101500Z.tar.zst new.db --files-to /srv/app   # + /srv/app/uploads/...\n\nAn existing database is replaced only with --overwrite, after a safety archive of it is\nwritten to the backup directory. A database open in other processes is restored through\nSQLite, so they see the new content on their next transaction; it is never swapped from\nunder them."
    )]
    Restore(restore::Args),
}

/// Progress bars on a terminal; nothing otherwise.
pub(crate) struct BarProgress {
    pub(crate) bar: Mutex<Option<ProgressBar>>,
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
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
}

/// Ctrl-C and SIGTERM: the signals are blocked in every thread and taken by one thread, which
/// aborts the S3 multipart uploads in progress (so no incomplete upload is left behind),
/// removes this process's temp files and exits with 128 + the signal's number (130, 143). A
/// restore into a live database that is cut short is rolled back by SQLite's journal.
pub(crate) fn handle_signals() {
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
                let aborted = litevault::location::abort_active_uploads();
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
pub(crate) fn bare_reindex_means_disputed(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
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

/// "N checks passed" and, when some were not run, ", M skipped (...)".
fn passed_and_skipped(checks: &[litevault::Check]) -> String {
    let skipped: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == litevault::sqlite::db::CheckStatus::Skipped)
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

/// Runs the parsed command (all but `serve`, which `main` starts); returns its exit code.
pub(crate) fn run(cli: &Cli, progress: &dyn Progress) -> Result<u8, Error> {
    let ctx = &context(cli)?;
    match &cli.command {
        Command::Backup(args) => backup::run(ctx, cli, args, progress),
        Command::List(args) => list::run(ctx, cli, args, progress),
        Command::Copy(args) => copy::run(ctx, cli, args, progress),
        Command::Prune(args) => prune::run(ctx, cli, args, progress),
        #[cfg(feature = "serve")]
        Command::Serve(_) => unreachable!("serve runs from main"),
        Command::Show(args) => show::run(ctx, cli, args, progress),
        Command::Verify(args) => verify::run(ctx, cli, args, progress),
        Command::Merge(args) => merge::run(ctx, cli, args, progress),
        Command::Restore(args) => restore::run(ctx, cli, args, progress),
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
