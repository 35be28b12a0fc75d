//! `litevault restore`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault restore` (its help text is on `Command::Restore`).
#[derive(clap::Args)]
pub(crate) struct Args {
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
    /// With --latest: the newest backup with this label (KEY=VALUE, as `backup --label`
    /// recorded it; repeatable: all must match).
    #[arg(long = "label", requires = "latest", value_name = "KEY=VALUE", value_parser = super::backup::parse_label)]
    labels: Vec<(String, String)>,
    /// Restore only when the database does not exist (a container's first start on an empty
    /// volume): an existing database is left as it is, and with --latest a location without
    /// a backup restores nothing; both exit 0 and say so (--json: "restored": false and why).
    #[arg(long, conflicts_with_all = ["overwrite", "dry_run"])]
    if_missing: bool,
    /// With --if-missing: a location without a backup is an error (exit 1), not a fresh start.
    #[arg(long, requires = "if_missing")]
    require_backup: bool,
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
    /// Run COMMAND (through `sh -c`) once the restore has succeeded, e.g. to rebuild data
    /// derived from the database: the report as JSON in the file $LITEVAULT_REPORT names,
    /// LITEVAULT_DATABASE, LITEVAULT_ARCHIVE, LITEVAULT_EVENT=after_restore and
    /// LITEVAULT_RESULT=ok in its environment. Its failure is reported (exit code, the end of
    /// its stderr; exit 0 all the same) and never undoes the restore.
    #[arg(long, value_name = "COMMAND", conflicts_with = "dry_run")]
    after: Option<String>,
    /// Seconds --after's command may run before it is killed (with its children).
    #[arg(long, default_value_t = 300, value_name = "SECS", requires = "after")]
    after_timeout: u64,
}

/// What `restore --if-missing` says when it restores nothing: `why` for people, `reason`
/// ("exists", "no backup") for scripts; exit 0.
fn not_restored(cli: &Globals, db: &std::path::Path, reason: &str, why: &str) -> u8 {
    if cli.json {
        out(&json(&serde_json::json!({
            "restored": false,
            "target": db,
            "reason": reason,
            "detail": why,
        })));
    } else if !cli.quiet {
        out(&format!("{why}: nothing restored ({})\n", db.display()));
    }
    exit::OK
}

/// Runs `litevault restore`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
        paths,
        latest,
        name,
        dir,
        at,
        labels,
        if_missing,
        require_backup,
        overwrite,
        dry_run,
        allow_newer_schema,
        quick,
        reindex,
        safety_dir,
        busy_timeout,
        crypt,
        files_to,
        after,
        after_timeout,
    } = args;
    // --if-missing: an existing database (or a link or anything else at its path) is kept.
    if let (true, Some(db)) = (*if_missing, paths.last()) {
        if db.symlink_metadata().is_ok() {
            return Ok(not_restored(cli, db, "exists", "the database exists"));
        }
    }
    let mut replay = None;
    let (archive, db) = match (paths.as_slice(), *latest) {
        ([db], true) => {
            let dir = dir.clone().unwrap_or_else(crate::ops::backup::default_backup_dir);
            let name = name.clone().unwrap_or_else(|| crate::location::name_of(db));
            let loc = crate::location::open(&dir)?;
            // Milliseconds for replicated transactions, seconds for archives' names.
            let at_ms = match at {
                Some(t) => Some(
                    crate::ops::chain::parse_at_ms(t)
                        .map_err(|m| Error::InvalidOption(format!("--at: {m}")))?,
                ),
                None => None,
            };
            let at = at_ms.map(|ms| ms.div_euclid(1000));
            // Replicated history, when there is some and it goes further than the archives.
            let mut newest_archive = None;
            if labels.is_empty() {
                match crate::ops::replica::newest_state(ctx, loc.as_ref(), &name, at_ms)? {
                    Some(crate::ops::replica::Newest::Point(point)) => {
                        replay = Some(crate::ops::replica::Replay {
                            location: dir.clone(),
                            point,
                        });
                    }
                    Some(crate::ops::replica::Newest::Archive(a)) => newest_archive = Some(Some(a)),
                    None => newest_archive = Some(None),
                }
            }
            let newest = match (replay.as_ref(), newest_archive) {
                (Some(r), _) => Some(r.point.base.clone()),
                (None, Some(found)) => found,
                (None, None) => crate::ops::chain::latest_labelled(ctx, loc.as_ref(), &name, at, labels)?,
            };
            let newest = match newest {
                Some(n) => n,
                None if *if_missing && !*require_backup => {
                    return Ok(not_restored(
                        cli,
                        db,
                        "no backup",
                        &format!("no backup of {name:?} in {}", loc.url()),
                    ))
                }
                None => return Err(crate::ops::chain::none_found(loc.as_ref(), &name, at, labels)),
            };
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
        replay,
    };
    if *dry_run {
        let plan = crate::ops::restore::plan_restore(ctx, archive, db, &opts)?;
        if cli.json {
            out(&json(&plan));
        } else if !cli.quiet {
            out(&render_plan(&plan));
        }
        return Ok(exit::OK);
    }
    let r = match crate::ops::restore::restore(ctx, archive, db, &opts, progress) {
        // Created by someone else while the backup was read: theirs is kept.
        Err(Error::WouldOverwrite { path })
            if *if_missing && path == std::path::absolute(db).unwrap_or_default() =>
        {
            return Ok(not_restored(
                cli,
                db,
                "exists",
                "the database appeared while the backup was read",
            ))
        }
        other => other?,
    };
    let hook = after.as_ref().map(|command| {
        let event = crate::ops::hook::HookEvent {
            event: "after_restore".into(),
            database: Some(r.plan.target.clone()),
            archive: Some(r.plan.archive.clone()),
            result: "ok".into(),
            error: None,
            report: serde_json::to_value(&r).unwrap_or_default(),
        };
        let hook = crate::ops::hook::Hook::shell(command, Duration::from_secs(*after_timeout));
        crate::ops::hook::run(&hook, &event, None)
    });
    if let Some(h) = hook.as_ref().filter(|h| !h.ok) {
        eprintln!(
            "warning: the restore succeeded, but the --after command failed ({}); the restored database stays",
            clean(&h.describe())
        );
    }
    if cli.json {
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        if let Some(h) = &hook {
            v["after"] = serde_json::to_value(h).unwrap_or_default();
        }
        out(&json(&v));
    } else if !cli.quiet {
        let mut s = format!(
            "restored {} -> {} ({}, {:.1} s)\n",
            r.plan.archive.display(),
            r.plan.target.display(),
            strategy_text(r.plan.strategy),
            r.duration_ms as f64 / 1000.0
        );
        if let Some(rp) = &r.replayed {
            s += &format!(
                "  replayed {} replicated transaction(s) onto it: the state after transaction {} (read {})\n",
                rp.txid, rp.txid, rp.time
            );
        }
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
        if let Some(h) = &hook {
            s += &format!("  --after: {}\n", clean(&h.describe()));
        }
        if cli.verbose {
            s += &render_checks(&r.checks, true);
        }
        out(&s);
    }
    Ok(exit::OK)
}

fn render_plan(p: &crate::ops::restore::RestorePlan) -> String {
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
                    crate::format::files::FileKind::File => "file",
                    crate::format::files::FileKind::Dir => "dir ",
                    crate::format::files::FileKind::Symlink => "link",
                },
                clean(&e.path.to_string_lossy()),
                if e.exists && e.kind != crate::format::files::FileKind::Dir {
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
