//! `verify --replica`: proves that a location's replicated history restores, stream by
//! stream, by restoring each stream's last transaction into a temp directory with every check
//! a restore makes ([`crate::ops::replica`] finds the streams; [`crate::ops::restore`] replays
//! and checks).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::segment::{self, Reader};
use crate::location;
use crate::ops::replica::{format_time_ms, points, streams, Point, Replay};

/// What [`verify_replica`] found in one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamCheck {
    /// The stream's base archive.
    pub base: String,
    /// Segments replayed (all of the stream's, in order).
    pub segments: u64,
    /// Segments past a missing one: never replayed, reported as a failure.
    pub orphaned: u64,
    /// The last transaction, restored and checked.
    pub last_txid: Option<u64>,
    /// When it was read.
    pub last_time: Option<String>,
    /// Whether the base, every segment and the restored state passed their checks.
    pub ok: bool,
    /// What failed.
    pub error: Option<String>,
    /// The restore's checks of the last state.
    pub checks: Vec<crate::model::check::Check>,
}

/// What [`verify_replica`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The location.
    pub location: String,
    /// The name checked.
    pub name: String,
    /// Each stream, oldest base first.
    pub streams: Vec<StreamCheck>,
    /// Whether every stream passed.
    pub ok: bool,
}

/// Proves that the replicated history of `name` in `location` restores: for each stream, the
/// state after its last transaction is built from the base and every segment (each checked
/// against its checksum, its place and its transaction numbers) in a temp directory (under
/// `temp_dir`, default the system's), and checked as a restore checks it (`quick`:
/// `quick_check` instead of `integrity_check`). The location is not changed.
pub fn verify_replica(
    ctx: &crate::ops::Context,
    location: &Path,
    name: &str,
    quick: bool,
    temp_dir: Option<&Path>,
) -> Result<ReplicaReport> {
    let loc = location::open(location)?;
    let streams = streams(loc.as_ref(), name)?;
    if streams.is_empty() {
        return Err(Error::NotFound {
            path: loc.object_path(&format!("{name}-*{}", segment::EXTENSION)),
        });
    }
    let mut out = Vec::new();
    for stream in streams {
        let tmp = match temp_dir {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .map_err(|e| {
            Error::io(
                "create a temp directory in",
                temp_dir.unwrap_or(Path::new("/tmp")),
                e,
            )
        })?;
        let last = match stream.segments.last() {
            Some(seg) => Reader::open(loc.as_ref(), seg, ctx.identities())
                .map(|r| points(&r.header).last().map(|c| (c.txid, c.time_ms))),
            None => Ok(None),
        };
        let mut check = StreamCheck {
            base: stream.base.clone(),
            segments: stream.segments.len() as u64,
            orphaned: stream.orphaned.len() as u64,
            last_txid: None,
            last_time: None,
            ok: false,
            error: None,
            checks: Vec::new(),
        };
        let result = last.and_then(|last| {
            let (txid, time_ms) = last.ok_or_else(|| {
                Error::bad_archive(loc.object_path(&stream.base), "its stream holds no transaction")
            })?;
            check.last_txid = Some(txid);
            check.last_time = Some(format_time_ms(time_ms));
            let opts = crate::ops::restore::RestoreOptions {
                quick,
                replay: Some(Replay {
                    location: location.to_path_buf(),
                    point: Point {
                        base: stream.base.clone(),
                        segments: stream.segments.clone(),
                        txid,
                        time_ms,
                    },
                }),
                ..Default::default()
            };
            crate::ops::restore::restore(
                ctx,
                &loc.object_path(&stream.base),
                &tmp.path().join("replica.db"),
                &opts,
                &crate::progress::NoProgress,
            )
        });
        match result {
            Ok(r) => {
                check.checks = r.checks;
                check.ok = stream.orphaned.is_empty();
                if !check.ok {
                    check.error = Some(format!(
                        "{} segment(s) after a missing one: {}",
                        stream.orphaned.len(),
                        stream.orphaned.join(", ")
                    ));
                }
            }
            Err(e) => check.error = Some(e.to_string()),
        }
        out.push(check);
    }
    Ok(ReplicaReport {
        location: loc.url(),
        name: name.to_string(),
        ok: out.iter().all(|c| c.ok),
        streams: out,
    })
}
