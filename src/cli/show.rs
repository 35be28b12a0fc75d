//! `litevault show`: its arguments, how they become the library's options, and the
//! rendering of its report.

use super::common::*;

// The arguments of `litevault show` (its help text is on `Command::Show`).
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The archive.
    archive: PathBuf,
}

/// Runs `litevault show`; returns the exit code.
pub(crate) fn run(ctx: &Context, cli: &Globals, args: &Args, _progress: &dyn Progress) -> Result<u8, Error> {
    let Args { archive } = args;
    let m = crate::format::dump::read_manifest(archive, ctx.identities())?;
    // A stored archive shorter than its manifest records was cut short.
    let truncated = match m.body_size {
        Some(_) => {
            let size = crate::location::object_size(archive)?;
            let encrypted = crate::format::crypt::is_encrypted_file(archive);
            crate::ops::list::ArchiveSummary::is_truncated(&m, size, encrypted).then_some(size)
        }
        None => None,
    };
    if cli.json {
        // The manifest, plus the count of its files when it has some.
        let mut v = serde_json::to_value(&m).map_err(|e| Error::InvalidOption(e.to_string()))?;
        if let (Some(obj), false) = (v.as_object_mut(), m.files.is_empty()) {
            let (count, bytes) = crate::format::files::totals(&m.files);
            obj.insert(
                "files_summary".into(),
                serde_json::json!({ "count": count, "bytes": bytes }),
            );
        }
        if let (Some(obj), Some(size)) = (v.as_object_mut(), truncated) {
            obj.insert("truncated".into(), serde_json::json!({ "stored_bytes": size }));
        }
        out(&json(&v));
    } else if !cli.quiet {
        let mut text = String::new();
        if let Some(size) = truncated {
            text += &format!(
                "TRUNCATED: {} stored of at least {}: this archive was cut short and cannot be restored\n",
                HumanBytes(size),
                HumanBytes(m.body_size.unwrap_or(0))
            );
        }
        text += &render_manifest(&m);
        out(&text);
    }
    Ok(exit::OK)
}

fn render_manifest(m: &crate::format::manifest::Manifest) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s += &format!("{k:<24}{v}\n");
    kv("format", m.format.clone());
    kv(
        "kind",
        if m.kind == "sql" {
            "sql (SQL dump)".into()
        } else {
            clean(&m.kind)
        },
    );
    if let Some(p) = &m.parent {
        kv(
            "parent",
            format!(
                "{} ({}), link {} of its chain, {} changed pages",
                clean(&p.name),
                clean(&p.created_at),
                m.chain_depth,
                m.changed_pages.unwrap_or(0)
            ),
        );
    }
    if let Some(r) = &m.full_reason {
        kv("full because", clean(r));
    }
    kv("created_at", clean(&m.created_at));
    kv("source", clean(&m.source));
    kv("host", clean(&m.host));
    if !m.labels.is_empty() {
        kv("labels", clean(&crate::model::labels::describe(&m.labels)));
    }
    kv("tool_version", clean(&m.tool_version));
    kv("sqlite_version", clean(&m.sqlite_version));
    kv("method", m.method.to_string());
    kv(
        "compression",
        format!(
            "{}{}",
            m.compression,
            m.compression_level
                .map(|l| format!(" (level {l})"))
                .unwrap_or_default()
        ),
    );
    kv(
        "db_size",
        format!("{} ({} bytes)", HumanBytes(m.db_size), m.db_size),
    );
    kv("page_size", m.db.page_size.to_string());
    kv("page_count", m.db.page_count.to_string());
    kv("freelist_count", m.db.freelist_count.to_string());
    kv(
        "journal_mode",
        clean(&format!(
            "{} (source: {})",
            m.db.journal_mode, m.source_journal_mode
        )),
    );
    kv("encoding", clean(&m.db.encoding));
    kv("user_version", m.db.user_version.to_string());
    kv("application_id", m.db.application_id.to_string());
    kv("auto_vacuum", clean(&m.db.auto_vacuum));
    kv("quick_check", clean(&m.quick_check));
    kv("foreign_key_violations", m.foreign_key_violations.to_string());
    kv("snapshot_restarts", m.snapshot_restarts.to_string());
    if !m.files.is_empty() {
        let (count, bytes) = crate::format::files::totals(&m.files);
        kv(
            "files",
            format!(
                "{count} files and directories, {} ({bytes} bytes)",
                HumanBytes(bytes)
            ),
        );
    }
    s += &format!("tables ({}):\n", m.db.tables.len());
    for t in &m.db.tables {
        let rows = t.rows.map(|n| format!("{n} rows")).unwrap_or_else(|| "-".into());
        s += &format!("  {:<40} {:<8} {rows}\n", clean(&t.name), clean(&t.kind));
    }
    s
}
