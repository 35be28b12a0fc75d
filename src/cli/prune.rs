//! `litevault prune`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault prune` (its help text is on `Command::Prune`).
#[derive(clap::Args)]
pub(crate) struct Args {
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
}

/// Runs `litevault prune`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, _progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
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
    } = args;
    let keep_within_secs = match keep_within {
        Some(d) => Some(
            crate::ops::prune::parse_duration(d)
                .map_err(|m| Error::InvalidOption(format!("--keep-within: {m}")))?,
        ),
        None => None,
    };
    let opts = crate::ops::prune::PruneOptions {
        policy: crate::ops::prune::Policy {
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
    let dir = dir.clone().unwrap_or_else(crate::ops::backup::default_backup_dir);
    let r = crate::ops::prune::prune(ctx, &dir, &opts)?;
    if cli.json {
        out(&json(&r));
    } else if !cli.quiet {
        out(&render_prune(&r, cli.verbose));
    }
    Ok(exit::OK)
}

fn render_prune(r: &crate::ops::prune::PruneReport, verbose: bool) -> String {
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
