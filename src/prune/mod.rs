//! `prune`: retention in a location, restic's way, grouped by name.
//!
//! [`prune`] lists a location, groups the backups by the name in their object names
//! (`<name>-<stamp>...`; safety archives `<name>-pre-restore-<stamp>...` are a group of their
//! own), asks [`policy::plan`] which to keep, and deletes the others, oldest first. Objects
//! whose names litevault did not give (`-o pre-migration.tar.zst`) are never deleted. It then
//! removes what failed writes left: local temp files of killed runs, and litevault's own
//! incomplete multipart uploads older than a day. A dry run is the same plan without the
//! deletions.

pub mod policy;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use policy::{parse_backup_name, parse_duration, plan, Candidate, Policy, Verdict};

use crate::error::{Error, Result};
use crate::location;

/// Options of [`prune`].
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// The retention policy (must keep something).
    pub policy: Policy,
    /// Only this name's backups (its own group and its safety archives' groups); default: all.
    pub name: Option<String>,
    /// Plan only; delete nothing.
    pub dry_run: bool,
    /// Allow a plan that removes every backup of a group.
    pub force: bool,
}

/// What [`prune`] decided and did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneReport {
    /// The location pruned.
    pub location: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Every backup's verdict and reasons, by group, newest first.
    pub verdicts: Vec<Verdict>,
    /// Objects left alone because litevault did not name them.
    pub not_managed: Vec<String>,
    /// Objects deleted (none in a dry run).
    pub deleted: Vec<PathBuf>,
    /// Bytes deleted (or that would be, in a dry run).
    pub freed_bytes: u64,
    /// What was cleaned up besides: temp files of killed runs, aborted incomplete uploads.
    pub cleaned: Vec<String>,
}

/// Keeps every parent of a kept incremental archive, transitively, with the reason "parent of
/// X". Manifests are read only when some backup is to go; a kept backup whose manifest cannot
/// be read stops the prune (its parents are unknown, so nothing may be deleted).
fn keep_parents(loc: &dyn location::Location, verdicts: &mut [Verdict]) -> Result<()> {
    if verdicts.iter().all(|v| v.keep) {
        return Ok(());
    }
    let parent_of = |name: &str| -> Result<Option<String>> {
        match crate::dump::read_manifest(&loc.object_path(name)) {
            Ok(m) => Ok(m.parent.map(|p| p.name)),
            // Nothing is deleted: the error stops the prune before any deletion.
            Err(e) => Err(e),
        }
    };
    let mut stack: Vec<String> = verdicts
        .iter()
        .filter(|v| v.keep)
        .map(|v| v.name.clone())
        .collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(child) = stack.pop() {
        if !seen.insert(child.clone()) {
            continue;
        }
        let Some(parent) = parent_of(&child)? else {
            continue;
        };
        if let Some(v) = verdicts.iter_mut().find(|v| v.name == parent) {
            if !v.keep {
                v.keep = true;
                v.reasons.clear();
            }
            v.reasons.push(format!("parent of {child}"));
            stack.push(parent);
        }
    }
    Ok(())
}

/// Age after which an incomplete multipart upload is litevault's leftover, not a live upload.
pub const STALE_UPLOAD_SECS: u64 = 24 * 3600;

/// Applies `opts.policy` to the backups in the location `dir`.
pub fn prune(dir: &Path, opts: &PruneOptions) -> Result<PruneReport> {
    if opts.policy.is_empty() {
        return Err(Error::InvalidOption(
            "no --keep-* policy given: prune needs at least one (e.g. --keep-daily 7)".into(),
        ));
    }
    let loc = location::open(dir)?;
    let objects = loc.list()?;
    let mut candidates = Vec::new();
    let mut not_managed = Vec::new();
    let mut sizes = std::collections::HashMap::new();
    for m in &objects {
        if !location::is_backup_name(&m.name) {
            continue;
        }
        let Some((group, created)) = parse_backup_name(&m.name) else {
            not_managed.push(m.name.clone());
            continue;
        };
        if let Some(name) = &opts.name {
            let ours = group == *name
                || group
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest == "-pre-restore" || rest == "-pre-merge");
            if !ours {
                continue;
            }
        }
        sizes.insert(m.name.clone(), m.size);
        candidates.push(Candidate {
            name: m.name.clone(),
            group,
            created,
        });
    }
    let mut verdicts = plan(&candidates, &opts.policy);
    keep_parents(loc.as_ref(), &mut verdicts)?;
    if !opts.force {
        let mut groups: std::collections::BTreeMap<&str, bool> = Default::default();
        for v in &verdicts {
            *groups.entry(v.group.as_str()).or_default() |= v.keep;
        }
        if let Some((g, _)) = groups.iter().find(|(_, kept)| !**kept) {
            return Err(Error::InvalidOption(format!(
                "the policy would remove every backup of {g:?}; pass --force if that is intended"
            )));
        }
    }
    let mut doomed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.keep).collect();
    // Newest first: an incremental is always newer than its parent, so children go before
    // parents and a crash part-way never leaves a link without its parent.
    let order = |v: &Verdict| {
        let created = parse_backup_name(&v.name).map(|(_, c)| c).unwrap_or(0);
        (created, location::sequence(&v.name))
    };
    doomed.sort_by(|a, b| order(b).cmp(&order(a)).then_with(|| b.name.cmp(&a.name)));
    let freed_bytes = doomed
        .iter()
        .map(|v| sizes.get(&v.name).copied().unwrap_or(0))
        .sum();
    let mut deleted = Vec::new();
    let mut cleaned = Vec::new();
    if !opts.dry_run {
        for v in doomed {
            loc.delete(&v.name)?;
            deleted.push(loc.object_path(&v.name));
        }
        cleaned = loc.clean_up(STALE_UPLOAD_SECS)?;
    }
    Ok(PruneReport {
        location: loc.url(),
        dry_run: opts.dry_run,
        verdicts,
        not_managed,
        deleted,
        freed_bytes,
        cleaned,
    })
}
