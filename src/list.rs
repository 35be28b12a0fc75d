//! `list`: find the archives and SQL dumps in a directory and read their manifests.
//!
//! Reads only the head of each archive (the manifest is its first entry), so listing a
//! directory of large archives costs a few KiB of decompression each. An archive that cannot be
//! read is listed with the reason instead of failing the whole listing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::archive::is_archive_name;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// One archive found by [`list`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Path of the archive.
    pub path: PathBuf,
    /// Size of the archive file in bytes.
    pub archive_size: u64,
    /// Its manifest, when it could be read.
    pub manifest: Option<Manifest>,
    /// Why the manifest could not be read.
    pub error: Option<String>,
}

/// Lists the archives in `dir`, oldest first (by the manifest's creation time, then name).
pub fn list(dir: &Path) -> Result<Vec<ArchiveSummary>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !(is_archive_name(&name) || crate::dump::is_dump_name(&name)) {
            continue;
        }
        let path = entry.path();
        let (manifest, error) = match crate::dump::read_manifest(&path) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(ArchiveSummary {
            path,
            archive_size: meta.len(),
            manifest,
            error,
        });
    }
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
