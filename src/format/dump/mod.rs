//! SQL dumps: exact, deterministic, git-friendly text backups, and a loader that treats every
//! dump as untrusted input.
//!
//! A litevault dump is SQL text that the sqlite3 CLI also loads, framed by comment lines:
//!
//! ```text
//! -- litevault SQL dump (format litevault/1) ...        line 1: identifies the file
//! -- created_at: 2026-11-23T10:00:00Z                  line 2: the only line that changes between
//!                                                               two dumps of unchanged data
//! -- manifest: {"format":"litevault/1","kind":"sql",...}   line 3: the manifest, one JSON line
//! PRAGMA page_size=4096; ... BEGIN; ... COMMIT;        the data section
//! -- end: {"sha256":"...","data_bytes":...,"statements":...}   trailer: checksum
//! ```
//!
//! `sha256` covers every line but the `created_at` line and the trailer (`sed '2d;$d' FILE |
//! sha256sum` computes it). Re-dumping a correctly restored database reproduces the data
//! section byte for byte, so the same hash over line 1, the manifest and the re-dumped data is
//! how [`crate::ops::verify`] proves a round trip.
//!
//! [`write`](mod@write) produces the data section (ordering, value encoding, virtual tables); [`load`](mod@load)
//! executes a dump, litevault's or a foreign one, into a fresh database through an allowlist.
//! [`format`](mod@format) owns the framing: the header and trailer lines and reading a dump's manifest
//! from its first lines; [`check`] loads a dump into a temp file and checks it.

pub mod check;
pub mod format;
pub mod load;
pub mod make;
pub mod write;

use std::path::Path;

use crate::error::Result;
use crate::format::archive;
use crate::format::crypt::Identities;
use crate::format::manifest::Manifest;

pub use format::*;

/// The manifest of anything `restore` accepts: an archive's, a litevault dump's, or, for a
/// foreign dump, an estimate marked by an empty `tool_version` (see
/// [`check::foreign_manifest`]).
pub fn read_any_manifest(path: &Path, ids: &Identities) -> Result<(Content, Manifest)> {
    let (compression, content, mut reader) = open(path, ids)?;
    let manifest = match content {
        Content::Archive => {
            drop(reader);
            archive::read_manifest(path, ids)?
        }
        Content::LitevaultDump => read_header(path, &mut reader)?.manifest,
        Content::ForeignDump => check::foreign_manifest(path, compression),
    };
    Ok((content, manifest))
}
