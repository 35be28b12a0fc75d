//! The command line (feature `cli`): the global flags and the subcommands (one module each, with
//! its arguments, the options they become and the rendering of its report), the progress bar,
//! the shared renderers, signals, and the dispatch from a parsed command to its module. It is
//! the top layer: [`main`] is the `litevault` binary (and the command that the Python wheel
//! installs); [`run_json`] runs one command in-process for a program that speaks the command
//! line's words (the Python module). Nothing below imports it.

use std::sync::Mutex;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::progress::{NoProgress, Progress};
use common::*;

mod backup;
mod common;
mod copy;
mod list;
mod merge;
mod prune;
mod replicate;
mod restore;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
mod serve_cmd;
mod show;
mod verify;

#[derive(Parser)]
#[command(
    name = "litevault",
    version,
    about = "Safe, fast, verifiable backups of SQLite databases, and restores that cannot lose data",
    after_help = "Examples:\n  litevault backup app.db\n  litevault list\n  litevault verify ~/.local/share/litevault/backups/app-20261121T101500Z.tar.zst\n  litevault restore app-20261121T101500Z.tar.zst app.db --overwrite\n\nExit codes: 0 ok, 1 error, 2 usage, 3 corruption or failed verification, 4 refused (would overwrite, in use, newer schema)."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) globals: Globals,
    #[command(subcommand)]
    pub(crate) command: Command,
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
        after_help = "Examples:\n  litevault verify app-20261121T101500Z.tar.zst\n  litevault verify app.db --quick\n  litevault verify app-20261121T101500Z.sql.zst     # rebuilds it in a temp file, proves the round trip\n  litevault verify app-20261121T101500Z.tar.zst --reindex   # rebuild disputed indexes in the temp copy, check again\n  litevault verify --replica s3://my-bucket/prod/app --name app   # replicated history: every segment, replayed\n\nA failed integrity check says what it found, once per object: storage (damaged pages), index\n(an index disagrees with its table; the rows are intact: --reindex), fts (a full-text index\nno longer matches its content), constraint (rows break their table's constraints).\n\nExit code 3 when any check fails."
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
    /// Ship every committed transaction to a location as it happens (continuous replication):
    /// a base archive, then the WAL's frames once an interval.
    #[command(
        after_help = "Examples:\n  litevault replicate app.db --to /backups/app\n  litevault replicate app.db --to s3://my-bucket/prod/app --interval 1s\n  litevault replicate /data/app.db --to s3://my-bucket/app --exec \"node build/index.js\"\n  litevault restore --latest --dir /backups/app new.db                     # the last transaction shipped\n  litevault restore --latest --dir /backups/app --at 2026-12-06T10:15:03Z new.db\n\nThe database must be in WAL mode. The replicator reads the -wal file; it holds a read\ntransaction only while it copies new frames, and never checkpoints. When it misses frames (it\nwas stopped, the WAL was truncated or restarted before it read them), it takes a new base\n(an incremental backup) and says so: no point inside such a gap can be restored.\nSIGTERM or SIGINT ship what was committed last, then stop (exit 0; with --exec, the\ncommand's exit code). docs/replication.md explains the format and the guarantees."
    )]
    Replicate(replicate::Args),
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

/// Runs the parsed command (all but `serve`, which `main` starts); returns its exit code.
pub(crate) fn run(cli: &Cli, progress: &dyn Progress) -> Result<u8, Error> {
    let ctx = &context(&cli.globals)?;
    match &cli.command {
        Command::Backup(args) => backup::run(ctx, &cli.globals, args, progress),
        Command::List(args) => list::run(ctx, &cli.globals, args, progress),
        Command::Copy(args) => copy::run(ctx, &cli.globals, args, progress),
        Command::Prune(args) => prune::run(ctx, &cli.globals, args, progress),
        #[cfg(feature = "serve")]
        Command::Serve(_) => unreachable!("serve runs from main"),
        Command::Show(args) => show::run(ctx, &cli.globals, args, progress),
        Command::Verify(args) => verify::run(ctx, &cli.globals, args, progress),
        Command::Merge(args) => merge::run(ctx, &cli.globals, args, progress),
        Command::Restore(args) => restore::run(ctx, &cli.globals, args, progress),
        Command::Replicate(args) => replicate::run(ctx, &cli.globals, args, progress),
    }
}

/// Runs the `litevault` command line with these arguments (the first one is the program's
/// name), as the binary does: signals handled, the report printed, errors on stderr; returns
/// the exit code. It may end the process (Ctrl-C, SIGTERM, a closed stdout).
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use std::io::IsTerminal;
    let cli = Cli::parse_from(bare_reindex_means_disputed(args.into_iter().map(Into::into)));
    #[cfg(feature = "serve")]
    if let Command::Serve(args) = &cli.command {
        lean_allocator();
        let format = match args.log_format {
            LogFormatArg::Text => crate::serve::LogFormat::Text,
            LogFormatArg::Json => crate::serve::LogFormat::Json,
        };
        return serve_cmd::main(&args.config, args.check, format, cli.globals.json);
    }
    if matches!(cli.command, Command::Replicate(_)) {
        lean_allocator();
    }
    // Before any thread of the command exists, so the signal mask set here is every thread's.
    handle_signals();
    let progress: Box<dyn Progress> =
        if !cli.globals.quiet && !cli.globals.json && std::io::stderr().is_terminal() {
            Box::new(BarProgress {
                bar: Mutex::new(None),
            })
        } else {
            Box::new(NoProgress)
        };
    let result = run(&cli, progress.as_ref());
    wait_if_interrupted();
    match result {
        Ok(code) => code,
        Err(err) => {
            if cli.globals.json {
                out(&json(&crate::error::ErrorReport::from(&err)));
            }
            eprintln!("error: {err}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            err.class().exit_code()
        }
    }
}

/// What [`run_json`] gives back when the command ran.
#[derive(Debug)]
pub struct JsonRun {
    /// The command's exit code (0, or e.g. 3 for a verification that found damage).
    pub exit_code: u8,
    /// What the command printed with `--json`: its report.
    pub report: String,
}

/// Runs one command of the command line in this process, on this thread, with `--json`:
/// `args` are the words after `litevault` (e.g. `["backup", "app.db", "--dir", "b"]`). Signals
/// are left alone (the caller cancels through `progress`); a warning the command prints goes to
/// stderr. `serve` and `replicate` run until stopped and are refused here: run the command.
/// A usage error (an unknown option, a missing argument) is [`Error::InvalidOption`] with
/// clap's message.
pub fn run_json(args: &[std::ffi::OsString], progress: &dyn Progress) -> Result<JsonRun, Error> {
    // `--json` before the subcommand: the arguments may end with `--` and positionals.
    let argv = ["litevault", "--json"]
        .into_iter()
        .map(std::ffi::OsString::from)
        .chain(args.iter().cloned());
    let cli = Cli::try_parse_from(bare_reindex_means_disputed(argv)).map_err(|e| {
        Error::InvalidOption(
            e.render()
                .to_string()
                .trim_start_matches("error: ")
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string(),
        )
    })?;
    match &cli.command {
        #[cfg(feature = "serve")]
        Command::Serve(_) => {
            return Err(Error::InvalidOption(
                "serve runs until stopped: start the `litevault serve` command".into(),
            ))
        }
        Command::Replicate(_) => {
            return Err(Error::InvalidOption(
                "replicate runs until stopped: start the `litevault replicate` command".into(),
            ))
        }
        _ => {}
    }
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            CAPTURED.with(|c| c.borrow_mut().take());
        }
    }
    CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
    let _restore = Restore;
    let exit_code = run(&cli, progress)?;
    let report = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    Ok(JsonRun { exit_code, report })
}
