//! `litevault list`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault list` (its help text is on `Command::List`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Location to list: a directory or s3://bucket/prefix (default: $LITEVAULT_DIR, else
    /// ~/.local/share/litevault/backups).
    #[arg(long, value_name = "LOCATION")]
    dir: Option<PathBuf>,
    /// Only the backups with this label (KEY=VALUE, as `backup --label` recorded it;
    /// repeatable: all must match). Backups whose manifest cannot be read are left out.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = super::backup::parse_label)]
    labels: Vec<(String, String)>,
}

/// Runs `litevault list`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, _progress: &dyn Progress) -> Result<u8, Error> {
    let Args { dir, labels } = args;
    let dir = dir.clone().unwrap_or_else(crate::ops::backup::default_backup_dir);
    let mut items = crate::ops::list::list(ctx, &dir)?;
    if !labels.is_empty() {
        items.retain(|it| {
            it.manifest
                .as_ref()
                .is_some_and(|m| crate::model::labels::matches(&m.labels, labels))
        });
    }
    if cli.json {
        out(&json(&items));
    } else if items.is_empty() && !labels.is_empty() && !cli.quiet {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out(&format!(
            "no archives or dumps with label {} in {}\n",
            clean(&wanted.join(", ")),
            dir.display()
        ));
    } else if !cli.quiet {
        out(&render_list(&dir, &items, cli.verbose));
    }
    Ok(exit::OK)
}

fn render_list(dir: &std::path::Path, items: &[crate::ops::list::ArchiveSummary], verbose: bool) -> String {
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
                    let (count, bytes) = crate::format::files::totals(&m.files);
                    format!(", {count} files ({})", HumanBytes(bytes))
                } + if it.encrypted { ", encrypted" } else { "" }
                    + &match &it.replicated {
                        Some(r) => format!(
                            ", then replicated: {} ({} segments, {}{})",
                            match (&r.first, &r.last) {
                                (Some((a, ta)), Some((b, tb))) =>
                                    format!("transactions {a}..{b}, {} .. {}", clean(ta), clean(tb)),
                                _ => "no transaction yet".into(),
                            },
                            r.segments,
                            HumanBytes(r.bytes),
                            if r.orphaned > 0 {
                                format!(", {} orphaned after a missing one", r.orphaned)
                            } else {
                                String::new()
                            }
                        ),
                        None => String::new(),
                    }
                    + &if m.labels.is_empty() {
                        String::new()
                    } else {
                        format!(", labels {}", clean(&crate::model::labels::describe(&m.labels)))
                    },
            ]),
            None if it.encrypted && it.error.is_none() => rows.push([
                name.clone(),
                crate::ops::prune::policy::parse_backup_name(&name)
                    .map(|(_, t)| crate::location::format_time(t))
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
