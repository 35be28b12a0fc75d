//! `litevault verify`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault verify` (its help text is on `Command::Verify`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// An archive, an SQL dump or a database file; with --replica, a location.
    path: PathBuf,
    /// Check the replicated history in the location PATH (`litevault replicate`): each
    /// stream's base and every segment, replayed to its last transaction and checked as a
    /// restore checks it.
    #[arg(long)]
    replica: bool,
    /// With --replica: the name of the backups (default: every name with replicated history).
    #[arg(long, requires = "replica")]
    name: Option<String>,
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
}

/// Runs `litevault verify`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
        path,
        replica,
        name,
        quick,
        temp_dir,
        reindex,
    } = args;
    if *replica {
        return run_replica(ctx, cli, path, name.as_deref(), *quick, temp_dir.as_deref());
    }
    let opts = VerifyOptions {
        quick: *quick,
        temp_dir: temp_dir.clone(),
        reindex: ReindexArg::to_lib(*reindex),
    };
    let r = crate::ops::verify::verify(ctx, path, &opts, progress)?;
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

/// `verify --replica LOCATION [--name NAME]`.
fn run_replica(
    ctx: &Context,
    cli: &Globals,
    location: &std::path::Path,
    name: Option<&str>,
    quick: bool,
    temp_dir: Option<&std::path::Path>,
) -> Result<u8, Error> {
    let names: Vec<String> = match name {
        Some(n) => vec![n.to_string()],
        None => {
            let loc = crate::location::open(location)?;
            let mut names: Vec<String> = crate::ops::replica::streams_in(&loc.list()?)
                .iter()
                .filter_map(|s| crate::model::naming::parse_backup_name(&s.base).map(|(g, _)| g))
                .collect();
            names.sort();
            names.dedup();
            if names.is_empty() {
                return Err(Error::InvalidOption(format!(
                    "no replicated history in {} (litevault replicate writes it)",
                    loc.url()
                )));
            }
            names
        }
    };
    let mut reports = Vec::new();
    for n in &names {
        reports.push(crate::ops::replica_verify::verify_replica(
            ctx, location, n, quick, temp_dir,
        )?);
    }
    let ok = reports.iter().all(|r| r.ok);
    if cli.json {
        out(&json(&reports));
    } else if !cli.quiet || !ok {
        let mut s = String::new();
        for r in &reports {
            for st in &r.streams {
                s += &match (&st.error, st.last_txid) {
                    (None, Some(t)) => format!(
                        "ok: {} + {} segment(s) to transaction {t} (read {}): {}\n",
                        clean(&st.base),
                        st.segments,
                        st.last_time.as_deref().unwrap_or("-"),
                        passed_and_skipped(&st.checks)
                    ),
                    (e, _) => format!(
                        "FAILED: {} + {} segment(s): {}\n",
                        clean(&st.base),
                        st.segments,
                        clean(e.as_deref().unwrap_or("no transaction"))
                    ),
                };
            }
        }
        out(&s);
    }
    Ok(if ok { exit::OK } else { exit::CORRUPT })
}
