//! `litevault merge`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault merge` (its help text is on `Command::Merge`).
#[derive(clap::Args)]
pub(crate) struct Args {
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
}

/// Runs `litevault merge`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, progress: &dyn Progress) -> Result<u8, Error> {
    let Args {
        sources,
        target,
        dry_run,
        keys,
        create_missing_tables,
        busy_timeout,
        safety_dir,
        no_safety_copy,
        crypt,
    } = args;
    let keys = match keys {
        Some(k) => {
            let text = std::fs::read_to_string(k).map_err(|e| Error::io("read", k, e))?;
            crate::ops::merge::parse_keys(&text)
                .map_err(|m| Error::InvalidOption(format!("{}: {m}", k.display())))?
        }
        None => Default::default(),
    };
    let opts = crate::ops::merge::MergeOptions {
        dry_run: *dry_run,
        keys,
        create_missing_tables: *create_missing_tables,
        busy_timeout: Duration::from_secs(*busy_timeout),
        temp_dir: None,
        safety_copy: !*no_safety_copy,
        safety_dir: safety_dir.clone(),
        encrypt: crypt.encryption(cli)?,
    };
    let r = crate::ops::merge::merge(ctx, sources, target, &opts, progress)?;
    if cli.json {
        out(&json(&r));
    } else if !cli.quiet {
        out(&render_merge(&r));
    }
    Ok(exit::OK)
}

fn render_merge(r: &crate::ops::merge::MergeReport) -> String {
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
