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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use policy::{parse_backup_name, parse_duration, plan, Candidate, Policy, Verdict};

use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::location;
use crate::ops::Context;

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
    /// Backups that cannot be restored as they are, and why ("app-...-2.tar.zst: parent
    /// app-....tar.zst missing"): left in place, and never counted by the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broken: Vec<String>,
}

/// The replication segments of base `name` among `streams`, in order (orphans after a missing
/// one included).
fn segments_of(streams: &[crate::ops::replica::Stream], name: &str) -> Vec<String> {
    streams
        .iter()
        .find(|s| s.base == name)
        .map(|s| s.segments.iter().chain(&s.orphaned).cloned().collect())
        .unwrap_or_default()
}

/// What prune learnt of one backup from its manifest.
enum Known {
    /// The manifest, and the SHA-256 of `manifest.json` as stored (archives; `None` for dumps).
    Read(Box<Manifest>, Option<String>),
    /// The manifest cannot be read: the backup is damaged or not litevault's.
    Unreadable(String),
}

/// Whether a backup can be restored, as far as its manifests tell.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    /// A full backup or dump, or an incremental whose every parent is there, unchanged.
    Restorable,
    /// An incremental whose chain is broken: why ("parent X missing").
    Broken(String),
    /// The manifest cannot be read: why.
    Unreadable(String),
}

/// Reads the manifest of backup `name`. `Ok(None)`: the object is gone (another prune).
/// Errors that say nothing about the backup itself (the network, a missing key for an
/// encrypted backup) stop the prune before any deletion.
fn read_known(ctx: &Context, loc: &dyn location::Location, name: &str) -> Result<Option<Known>> {
    let path = loc.object_path(name);
    let read = if crate::format::dump::is_dump_name(name) {
        crate::format::dump::read_manifest(&path, ctx.identities()).map(|m| (m, None))
    } else {
        crate::format::archive::read_manifest_and_sha256(&path, ctx.identities())
            .map(|(m, sha)| (m, Some(sha)))
    };
    match read {
        Ok((m, sha)) => Ok(Some(Known::Read(Box::new(m), sha))),
        Err(Error::NotFound { .. }) => Ok(None),
        // Deleted while it was read (another prune): a read through a bucket's range reader
        // then fails as an I/O error, so the object itself is asked.
        Err(_) if loc.head(name)?.is_none() => Ok(None),
        Err(e @ (Error::Crypt { .. } | Error::Remote { .. } | Error::Io { .. })) => Err(e),
        Err(e) => Ok(Some(Known::Unreadable(e.to_string()))),
    }
}

/// The standing of every backup in `known`: an incremental is restorable when its parent is
/// in the location, is the very archive it was made on (the SHA-256 of its manifest is the one
/// the link records) and is restorable itself.
fn standings(known: &HashMap<String, Known>) -> HashMap<String, Standing> {
    fn of(
        name: &str,
        known: &HashMap<String, Known>,
        memo: &mut HashMap<String, Standing>,
        depth: usize,
    ) -> Standing {
        if let Some(s) = memo.get(name) {
            return s.clone();
        }
        let s = match known.get(name) {
            None => Standing::Broken("missing".into()),
            Some(Known::Unreadable(why)) => Standing::Unreadable(why.clone()),
            Some(Known::Read(m, _)) => match &m.parent {
                None => Standing::Restorable,
                Some(_) if depth > known.len() => Standing::Broken("its chain loops".into()),
                Some(link) => match known.get(&link.name) {
                    None => Standing::Broken(format!("parent {} missing", link.name)),
                    Some(Known::Unreadable(_)) => {
                        Standing::Broken(format!("parent {} unreadable", link.name))
                    }
                    Some(Known::Read(_, Some(sha))) if *sha != link.manifest_sha256 => {
                        Standing::Broken(format!("parent {} replaced", link.name))
                    }
                    Some(Known::Read(..)) => match of(&link.name, known, memo, depth + 1) {
                        Standing::Restorable => Standing::Restorable,
                        _ => Standing::Broken(format!("parent {} broken", link.name)),
                    },
                },
            },
        };
        memo.insert(name.to_string(), s.clone());
        s
    }
    let mut memo = HashMap::new();
    for name in known.keys() {
        of(name, known, &mut memo, 0);
    }
    memo
}

/// Keeps every parent of a kept incremental archive, transitively, with the reason "parent of
/// X", from the manifests already read.
/// Keeps the base of each name's newest replication stream: a replicator may still be adding
/// segments to it (its parents are kept after, as any kept backup's).
fn keep_live_streams(objects: &[location::ObjectMeta], verdicts: &mut [Verdict]) {
    let mut newest: HashMap<String, String> = HashMap::new();
    // Oldest first: the last one seen of a group is its newest.
    for s in crate::ops::replica::streams_in(objects) {
        if let Some((group, _)) = parse_backup_name(&s.base) {
            newest.insert(group, s.base);
        }
    }
    for v in verdicts.iter_mut() {
        if newest.get(&v.group) == Some(&v.name) {
            if !v.keep {
                v.keep = true;
                v.reasons.clear();
            }
            v.reasons.push("base of the newest replicated history".into());
        }
    }
}

fn keep_parents(known: &HashMap<String, Known>, verdicts: &mut [Verdict]) {
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
        let Some(Known::Read(m, _)) = known.get(&child) else {
            continue;
        };
        let Some(parent) = m.parent.as_ref().map(|p| p.name.clone()) else {
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
}

/// The backups `verdicts` do not keep, newest first: an incremental is always newer than its
/// parent, so children go before parents and a crash part-way never leaves a link without its
/// parent.
fn doomed_newest_first(verdicts: &[Verdict]) -> Vec<String> {
    let mut doomed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.keep).collect();
    let order = |v: &Verdict| {
        let created = parse_backup_name(&v.name).map(|(_, c)| c).unwrap_or(0);
        (created, location::sequence(&v.name))
    };
    doomed.sort_by(|a, b| order(b).cmp(&order(a)).then_with(|| b.name.cmp(&a.name)));
    doomed.into_iter().map(|v| v.name.clone()).collect()
}

/// Age after which an incomplete multipart upload is litevault's leftover, not a live upload.
pub const STALE_UPLOAD_SECS: u64 = 24 * 3600;

/// Applies `opts.policy` to the backups in the location `dir`.
pub fn prune(ctx: &Context, dir: &Path, opts: &PruneOptions) -> Result<PruneReport> {
    ctx.apply_priority();
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
            snapshot_offset_ns: 0,
        });
    }
    // A first plan from the names alone: when it keeps everything, nothing is read.
    let mut verdicts = plan(&candidates, &opts.policy);
    let mut broken = Vec::new();
    let mut known = HashMap::new();
    if verdicts.iter().any(|v| !v.keep) {
        // Something may go: every backup of the groups concerned is read, so that the policy
        // counts only backups that can be restored (a link whose chain is broken neither keeps
        // nor pushes out anything), orders them by their snapshots, and keeps their parents.
        let groups: std::collections::HashSet<String> = verdicts
            .iter()
            .filter(|v| !v.keep)
            .map(|v| v.group.clone())
            .collect();
        for c in candidates.iter().filter(|c| groups.contains(&c.group)) {
            if let Some(k) = read_known(ctx, loc.as_ref(), &c.name)? {
                known.insert(c.name.clone(), k);
            }
        }
        let standing = standings(&known);
        let mut counted = Vec::new();
        let mut set_aside = Vec::new();
        for c in candidates {
            if !groups.contains(&c.group) {
                counted.push(c);
                continue;
            }
            match (standing.get(&c.name), known.get(&c.name)) {
                (Some(Standing::Restorable), Some(Known::Read(m, _))) => {
                    let snapshot_offset_ns = m.snapshot_offset_ns(c.created);
                    counted.push(Candidate {
                        snapshot_offset_ns,
                        ..c
                    });
                }
                // Vanished since the listing (another prune): nothing to decide.
                (None, _) | (_, None) => {}
                (Some(Standing::Broken(why)), _) => {
                    broken.push(format!("{}: {why}", c.name));
                    set_aside.push((c, format!("broken: {why}")));
                }
                (Some(Standing::Unreadable(why)), _) => {
                    broken.push(format!("{}: unreadable: {why}", c.name));
                    set_aside.push((c, format!("unreadable: {why}")));
                }
                (Some(Standing::Restorable), Some(Known::Unreadable(_))) => {
                    unreachable!("an unreadable manifest is never restorable")
                }
            }
        }
        verdicts = plan(&counted, &opts.policy);
        keep_live_streams(&objects, &mut verdicts);
        keep_parents(&known, &mut verdicts);
        // Left where they are, and reported: a broken link may be mended by putting its parent
        // back; deleting it is the user's decision.
        for (c, reason) in set_aside {
            verdicts.push(Verdict {
                name: c.name.clone(),
                group: c.group.clone(),
                created_at: location::format_time(c.created),
                keep: true,
                reasons: vec![reason],
            });
        }
        verdicts.sort_by(|a, b| a.group.cmp(&b.group));
    }
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
    let mut deleted = Vec::new();
    let mut cleaned = Vec::new();
    if !opts.dry_run && verdicts.iter().any(|v| !v.keep) {
        // An incremental published since the listing may have a doomed backup as its parent
        // (it chose it before another run's newer backup appeared): the location is listed
        // again just before the deletions, so that its parent, and that parent's own, stay.
        let listed: std::collections::HashSet<&str> = objects.iter().map(|m| m.name.as_str()).collect();
        let mut spared = std::collections::HashSet::new();
        for m in loc.list()? {
            if listed.contains(m.name.as_str()) || !location::is_backup_name(&m.name) {
                continue;
            }
            let mut child = m.name.clone();
            let mut next = read_known(ctx, loc.as_ref(), &child)?;
            while let Some(Known::Read(cm, _)) = next {
                let Some(parent) = cm.parent.as_ref().map(|p| p.name.clone()) else {
                    break;
                };
                if !spared.insert(parent.clone()) {
                    break;
                }
                if let Some(v) = verdicts.iter_mut().find(|v| v.name == parent) {
                    if !v.keep {
                        v.keep = true;
                        v.reasons.clear();
                    }
                    v.reasons
                        .push(format!("parent of {child} (published during the prune)"));
                }
                next = known.remove(&parent);
                child = parent;
            }
        }
        // A base's replication segments go with it, the last first: a prune stopped half-way
        // leaves the stream's remaining segments a whole prefix.
        let streams = crate::ops::replica::streams_in(&loc.list()?);
        for name in doomed_newest_first(&verdicts) {
            for seg in segments_of(&streams, &name).iter().rev() {
                loc.delete(seg)?;
                deleted.push(loc.object_path(seg));
            }
            loc.delete(&name)?;
            deleted.push(loc.object_path(&name));
        }
    }
    if !opts.dry_run {
        cleaned = loc.clean_up(STALE_UPLOAD_SECS)?;
    }
    let streams = crate::ops::replica::streams_in(&objects);
    let freed_bytes = doomed_newest_first(&verdicts)
        .iter()
        .flat_map(|n| segments_of(&streams, n).into_iter().chain([n.clone()]))
        .map(|n| sizes.get(&n).copied().unwrap_or(0))
        .sum();
    Ok(PruneReport {
        location: loc.url(),
        dry_run: opts.dry_run,
        verdicts,
        not_managed,
        deleted,
        freed_bytes,
        cleaned,
        broken,
    })
}
