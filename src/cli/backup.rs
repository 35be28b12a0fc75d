//! `litevault backup`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;
use crate::format::dump::write::Selection;
use crate::ops::backup::ArchiveOptions;
use crate::ops::backup::Destination;
use crate::ops::backup::Format;

// The arguments of `litevault backup` (its help text is on `Command::Backup`).
#[derive(clap::Args)]
pub(crate) struct Args {
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
    /// Record the application's own metadata in the manifest (repeatable): shown by list and
    /// show, chosen by `list --label` and `restore --latest --label`. KEY: 1-64 letters,
    /// digits, '_', '-', '.'; VALUE: up to 256 characters. Not for secrets: manifests are
    /// readable by whoever can list the location (unless the backup is encrypted).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

/// Parses `--label KEY=VALUE` (also for list and restore).
pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    crate::model::labels::parse(text)
}

/// Runs `litevault backup`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
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
        labels,
    } = args;
    let labels = crate::model::labels::from_pairs(labels)
        .map_err(|m| Error::InvalidOption(format!("--label: {m}")))?;
    let mut ctx = ctx.clone().with_threads(*threads);
    if matches!(priority, PriorityArg::Low) {
        ctx = ctx.in_background();
    }
    let destination = match output {
        Some(path) => Destination::File {
            path: path.clone(),
            overwrite: *overwrite,
        },
        None => Destination::Location {
            dir: dir.clone(),
            tag: None,
        },
    };
    let format = match format {
        FormatArg::Sql if !include.is_empty() => {
            return Err(Error::InvalidOption(
                "--include applies to archives, not to SQL dumps (--format sql): a dump is text for one \
                 database; back the files up in an archive"
                    .into(),
            ))
        }
        FormatArg::Sql => Format::Sql(Selection {
            tables: tables.clone(),
            exclude: exclude_tables.clone(),
        }),
        FormatArg::Archive if !tables.is_empty() || !exclude_tables.is_empty() => {
            return Err(Error::InvalidOption(
                "--table and --exclude-table apply to SQL dumps (--format sql)".into(),
            ))
        }
        FormatArg::Archive => Format::Archive(ArchiveOptions {
            incremental: *incremental,
            full_every: *full_every,
            include: include.clone(),
        }),
    };
    let opts = BackupOptions {
        no_checkpoint: *no_checkpoint,
        destination,
        format,
        name: name.clone(),
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
        encrypt: crypt.encryption(cli)?,
        labels,
        ..Default::default()
    };
    let r = crate::ops::backup::backup(&ctx, db, &opts, progress)?;
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
                Compression::None => "uncompressed".to_string(),
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
        if !r.labels.is_empty() {
            s += &format!(
                "  labels: {}\n",
                clean(&crate::model::labels::describe(&r.labels))
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
            s += &format!("  sha256 {} (archive)\n", r.archive_sha256);
            if let Some(sum) = &r.database_sha256 {
                s += &format!("  sha256 {sum} (database)\n");
            }
        }
        out(&s);
    }
    Ok(exit::OK)
}
