//! Writing a dump's bytes (`backup --format sql`) and re-dumping a restored database to prove a
//! round trip.
//!
//! `write_dump` writes header, data section and trailer of a snapshot into any writer; the
//! orchestration (snapshot, checks, plan, where the bytes go) is `backup`'s, so data flows one
//! way: snapshot -> dump writer -> location.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::format::{Trailer, CREATED_PREFIX, MANIFEST_PREFIX, TRAILER_PREFIX};
use super::write::{self, DumpPlan, Selection};
use crate::error::{Error, Result};
use crate::format::archive::HashWriter;
use crate::format::manifest::Manifest;
use crate::model::hex;
use crate::progress::{NoProgress, Progress};
use crate::sqlite::db;

/// Writes a whole dump of `conn` (a private snapshot) as `plan` says into `out`: the header
/// line, `created_at`, the manifest line, the data section and the trailer line. Returns the
/// trailer. Where the bytes go (compressor, file, bucket) is the caller's business.
pub(crate) fn write_dump(
    conn: &rusqlite::Connection,
    plan: &DumpPlan,
    manifest: &Manifest,
    created_at: &str,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<Trailer> {
    let manifest_line = format!(
        "{MANIFEST_PREFIX}{}\n",
        serde_json::to_string(manifest).map_err(io::Error::other)?
    );
    let line1 = super::format::header_line();
    out.write_all(line1.as_bytes())?;
    out.write_all(format!("{CREATED_PREFIX}{created_at}\n").as_bytes())?;
    out.write_all(manifest_line.as_bytes())?;
    let mut prefix = line1.into_bytes();
    prefix.extend_from_slice(manifest_line.as_bytes());
    progress.begin("dump", None);
    let trailer = write_hashed(conn, plan, &prefix, out, progress)?;
    progress.end();
    let trailer_line = format!(
        "{TRAILER_PREFIX}{}\n",
        serde_json::to_string(&trailer).map_err(io::Error::other)?
    );
    out.write_all(trailer_line.as_bytes())?;
    Ok(trailer)
}

/// Writes the data section to `out` and returns the trailer: the SHA-256 runs over `prefix`
/// (line 1 and the manifest line) and then the data.
fn write_hashed(
    conn: &rusqlite::Connection,
    plan: &DumpPlan,
    prefix: &[u8],
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> io::Result<Trailer> {
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    let mut h = HashWriter {
        inner: BufWriter::with_capacity(1 << 18, out),
        hasher,
        bytes: 0,
    };
    conn.execute_batch("BEGIN").map_err(io::Error::other)?;
    let stats = write::write_data(conn, plan, &mut h, progress);
    let _ = conn.execute_batch("COMMIT");
    let stats = stats?;
    h.flush()?;
    Ok(Trailer {
        sha256: hex(&h.hasher.finalize()),
        data_bytes: h.bytes,
        statements: stats.statements,
    })
}

/// Re-dumps the database at `db_path` (all of it) and returns the trailer it would have after
/// `prefix`: equal to the original trailer exactly when the round trip was exact.
pub(crate) fn redump(db_path: &Path, prefix: &[u8]) -> Result<Trailer> {
    let conn = db::open_private(db_path, false)?;
    let plan = write::plan(&conn, &Selection::default())
        .map_err(|m| Error::bad_archive(db_path, format!("cannot re-dump: {m}")))?;
    write_hashed(&conn, &plan, prefix, &mut io::sink(), &NoProgress)
        .map_err(|e| Error::io("re-dump", db_path, e))
}
