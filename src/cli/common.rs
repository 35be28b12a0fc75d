//! What the subcommands share: the global flags ([`Globals`]), encryption arguments, the
//! context built from them, the value enums, the progress bar, stdout (and its capture for
//! [`super::run_json`]), signals, and the renderers of checks and counts.

use std::io::Write;
use std::sync::Mutex;

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

// What every subcommand's module uses, imported once here (they `use super::common::*`).
pub(crate) use crate::error::Error;
pub(crate) use crate::format::archive::Compression;
pub(crate) use crate::ops::backup::BackupOptions;
pub(crate) use crate::ops::restore::RestoreOptions;
pub(crate) use crate::ops::verify::VerifyOptions;
pub(crate) use crate::ops::Context;
pub(crate) use crate::progress::Progress;
pub(crate) use crate::sqlite::db::{Check, CheckStatus, Reindex};
pub(crate) use crate::sqlite::snapshot::Method;
pub(crate) use indicatif::HumanBytes;
pub(crate) use std::path::PathBuf;
pub(crate) use std::time::Duration;

/// Exit codes, as documented in the README.
pub(crate) mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const CORRUPT: u8 = 3;
}

/// The flags every subcommand takes.
#[derive(clap::Args)]
pub(crate) struct Globals {
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
    pub(crate) identity: Vec<PathBuf>,
    /// A file whose first line is the passphrase of passphrase-encrypted backups: reads them,
    /// and on backup (without --encrypt-to) encrypts with it.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

/// Who can read what a command writes (backup, and the safety archives of restore and merge).
#[derive(clap::Args, Clone)]
pub(crate) struct EncryptArgs {
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
    pub(crate) fn encryption(
        &self,
        cli: &Globals,
    ) -> Result<Option<crate::format::crypt::Encryption>, Error> {
        let to = crate::format::crypt::Encryption::to_recipients(&self.encrypt_to, &self.encrypt_to_file)?;
        match (to, &cli.passphrase_file) {
            (Some(_), Some(_)) => Err(Error::InvalidOption(
                "--passphrase-file cannot be combined with --encrypt-to/--encrypt-to-file (age encrypts to a passphrase alone)"
                    .into(),
            )),
            (Some(to), None) => Ok(Some(to)),
            (None, Some(p)) => Ok(Some(crate::format::crypt::Encryption::with_passphrase_file(p)?)),
            (None, None) => Ok(None),
        }
    }
}

/// The context every command runs with: the keys that encrypted backups are read with,
/// --identity (else $LITEVAULT_IDENTITY) and --passphrase-file.
pub(crate) fn context(cli: &Globals) -> Result<Context, Error> {
    let mut ids = crate::format::crypt::Identities::new();
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
pub(crate) enum MethodArg {
    /// Page-for-page copy through SQLite's backup API (pages byte-identical).
    Pages,
    /// VACUUM INTO: a compacted copy.
    Vacuum,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum FormatArg {
    /// A tar archive of the database file (exact pages; fastest to restore).
    Archive,
    /// SQL text: exact values, deterministic, one row per line (diffable, git-friendly).
    Sql,
}

/// Which indexes `--reindex` rebuilds.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReindexArg {
    /// The indexes integrity_check finds disagreeing with their tables (then checks again).
    Disputed,
    /// Every index, before the checks.
    All,
}

impl ReindexArg {
    pub(crate) fn to_lib(arg: Option<ReindexArg>) -> Reindex {
        match arg {
            None => Reindex::No,
            Some(ReindexArg::Disputed) => Reindex::Disputed,
            Some(ReindexArg::All) => Reindex::All,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PriorityArg {
    Low,
    Normal,
}

#[cfg(feature = "serve")]
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
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

thread_local! {
    /// What [`out`] writes while [`run_json`] runs a command on this thread.
    pub(crate) static CAPTURED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Writes to stdout (or to [`run_json`]'s capture); a closed pipe (e.g. `| head`) ends the
/// program quietly with success.
pub(crate) fn out(text: &str) {
    let captured = CAPTURED.with(|c| c.borrow_mut().as_mut().map(|buf| buf.push_str(text)).is_some());
    if captured {
        return;
    }
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
            while libc::sigwait(&set, &mut sig) == 0 {
                // A command that stops on its own terms (replicate) hears the first signal.
                if let Some(stop) = GRACEFUL.get() {
                    if !stop.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        let child = FORWARD_TO.load(std::sync::atomic::Ordering::SeqCst);
                        if child > 0 {
                            libc::kill(child, sig);
                        }
                        continue;
                    }
                }
                INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                let aborted = crate::location::abort_active_uploads();
                let removed = crate::fsutil::remove_own_temps();
                let name = if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!(
                    "interrupted ({name}): aborted {aborted} upload(s) in progress, removed {removed} temp file(s); nothing was published or replaced"
                );
                std::process::exit(128 + sig);
            }
        });
    }
}

/// For the commands that run for days (`serve`, `replicate`): two malloc arenas instead of one
/// per core and thread group, and blocks of 128 KiB and more mapped on their own and returned
/// when freed (glibc otherwise raises that threshold after each large free and keeps freed
/// memory in its arenas); and no up-front page-cache allocation per SQLite connection (20
/// pages, about 90 KiB, each replicator's connection would hold for nothing). Measured with
/// 100 replicated databases in one daemon (bench/many.py): 181 MiB of RSS without the malloc
/// settings, 64 MiB with them.
pub(crate) fn lean_allocator() {
    // SAFETY: sqlite3_config before any connection exists (SQLite refuses it, harmlessly,
    // once initialized); a null buffer with size and count 0 turns the initial bulk allocation
    // of each connection's page cache off.
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; called before the command's
    // threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// Set once a signal is being handled by exiting: the temp files are being removed, and the
/// command's own error (a temp file gone from under it) must not exit first with another code.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits for the signal thread to end the process when it is doing so (see [`INTERRUPTED`]):
/// the exit code is then 128 + the signal's, whatever the command was doing.
pub(crate) fn wait_if_interrupted() {
    while INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Set by the first SIGINT or SIGTERM instead of exiting, for a command that registered it
/// ([`stop_gracefully`]); a second signal exits as usual.
static GRACEFUL: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::OnceLock::new();
/// A child process the first signal is passed on to (0: none).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The first SIGINT or SIGTERM sets `stop` rather than ending the process.
pub(crate) fn stop_gracefully(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let _ = GRACEFUL.set(stop);
}

/// The first SIGINT or SIGTERM is also sent to process `pid`.
pub(crate) fn forward_signals_to(pid: u32) {
    FORWARD_TO.store(
        i32::try_from(pid).unwrap_or(0),
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// "N checks passed" and, when some were not run, ", M skipped (...)".
pub(crate) fn passed_and_skipped(checks: &[crate::sqlite::db::Check]) -> String {
    let skipped: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == crate::sqlite::db::CheckStatus::Skipped)
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

/// "1 table", "3 tables".
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Text from an archive (untrusted) made safe for a terminal: control characters escaped.
pub(crate) fn clean(s: &str) -> String {
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

pub(crate) fn strategy_text(s: crate::ops::restore::Strategy) -> &'static str {
    match s {
        crate::ops::restore::Strategy::Create => "new file, atomic rename",
        crate::ops::restore::Strategy::Live => "copied into the existing database through SQLite",
        crate::ops::restore::Strategy::Swap => "old file kept aside, atomic rename",
    }
}

pub(crate) fn render_checks(checks: &[Check], all: bool) -> String {
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
