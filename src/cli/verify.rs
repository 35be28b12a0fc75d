//! `litevault verify`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::*;

// The arguments of `litevault verify` (its help text is on `Command::Verify`).
#[derive(clap::Args)]
pub(crate) struct Args {
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
}

/// Runs `litevault verify`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Cli, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
        path,
        quick,
        temp_dir,
        reindex,
    } = args;
    let opts = VerifyOptions {
        quick: *quick,
        temp_dir: temp_dir.clone(),
        reindex: ReindexArg::to_lib(*reindex),
    };
    let r = litevault::verify(ctx, path, &opts, progress)?;
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
