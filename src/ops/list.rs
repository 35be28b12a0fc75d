//! `list`: find the archives and SQL dumps in a location and read their manifests.
//!
//! Reads only the head of each archive (the manifest is its first entry): a few KiB of
//! decompression each, and for an object store one range read per archive, eight at a time.
//! An archive that cannot be read is listed with the reason instead of failing the whole
//! listing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::manifest::Manifest;
use crate::location::{self, Location};
use crate::ops::Context;

/// One archive found by [`list`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Path of the archive (a local path or `s3://bucket/key`).
    pub path: PathBuf,
    /// Size of the archive in bytes.
    pub archive_size: u64,
    /// Its manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read.
    pub error: Option<String>,
    /// Whether it is stored encrypted (age). Without an identity its manifest is not read
    /// (`manifest` and `error` are then both empty).
    #[serde(default)]
    pub encrypted: bool,
    /// Entries (files, directories, symlinks) stored beside the database (`backup --include`).
    pub files: u64,
    /// Bytes of the regular files among them.
    pub files_bytes: u64,
    /// Whether the stored archive is shorter than its manifest says it is (cut short: an
    /// interrupted copy, a truncated file). Known for zstd archives stored in clear.
    #[serde(default)]
    pub truncated: bool,
    /// For the base of a replication stream: the transactions replicated after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated: Option<crate::ops::replica::Span>,
}

impl ArchiveSummary {
    /// Whether an archive of `size` stored bytes is shorter than `manifest` records.
    pub fn is_truncated(manifest: &Manifest, size: u64, encrypted: bool) -> bool {
        !encrypted && manifest.body_size.is_some_and(|body| size < body)
    }
}

/// Lists the archives in the location `dir` (a directory or `s3://bucket/prefix`), oldest first
/// (by the manifest's creation time, then name).
pub fn list(ctx: &Context, dir: &Path) -> Result<Vec<ArchiveSummary>> {
    let loc = location::open(dir)?;
    list_in(ctx, loc.as_ref())
}

/// [`list`] for an open location.
pub fn list_in(ctx: &Context, loc: &dyn Location) -> Result<Vec<ArchiveSummary>> {
    let listing = loc.list()?;
    let streams = crate::ops::replica::streams_in(&listing);
    let sizes: std::collections::HashMap<String, u64> =
        listing.iter().map(|m| (m.name.clone(), m.size)).collect();
    let objects: Vec<_> = listing
        .into_iter()
        .filter(|m| location::is_backup_name(&m.name))
        .collect();
    let read = |m: &location::ObjectMeta| {
        let path = loc.object_path(&m.name);
        let (manifest, error, encrypted) = match crate::format::dump::read_manifest(&path, ctx.identities()) {
            Ok(found) => (
                Some(found),
                None,
                m.name.ends_with(crate::format::crypt::EXTENSION),
            ),
            // Encrypted and no key given: listed as such, not as an error.
            Err(crate::error::Error::Crypt { .. }) if ctx.identities().is_empty() => (None, None, true),
            Err(e @ crate::error::Error::Crypt { .. }) => (None, Some(e.to_string()), true),
            Err(e) => (None, Some(e.to_string()), false),
        };
        let (files, files_bytes) = manifest
            .as_ref()
            .map(|m| crate::format::files::totals(&m.files))
            .unwrap_or((0, 0));
        let truncated = manifest
            .as_ref()
            .is_some_and(|mf| ArchiveSummary::is_truncated(mf, m.size, encrypted));
        ArchiveSummary {
            path,
            archive_size: m.size,
            truncated,
            manifest,
            error,
            encrypted,
            files,
            files_bytes,
            replicated: streams
                .iter()
                .find(|s| s.base == m.name)
                .and_then(|s| crate::ops::replica::span(ctx.identities(), loc, s, &sizes).ok()),
        }
    };
    let mut out: Vec<ArchiveSummary> = if loc.local_dir().is_some() {
        objects.iter().map(read).collect()
    } else {
        // Remote heads are round trips: several at a time.
        let workers = 8.min(objects.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<ArchiveSummary>>> =
            objects.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(m) = objects.get(i) else { break };
                    let summary = read(m);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(summary);
                    }
                });
            }
        });
        slots
            .into_iter()
            .filter_map(|s| s.into_inner().ok().flatten())
            .collect()
    };
    out.sort_by(|a, b| {
        let key = |s: &ArchiveSummary| {
            s.manifest
                .as_ref()
                .map(|m| m.created_at.clone())
                .unwrap_or_default()
        };
        key(a).cmp(&key(b)).then_with(|| a.path.cmp(&b.path))
    });
    Ok(out)
}
