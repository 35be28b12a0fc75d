//! Reading replicated history back: the streams of a location (a base archive and the
//! segments `litevault replicate` wrote after it), the point a restore goes to (the last
//! transaction, or the last one read by a given time), and the replay of a stream's frames onto
//! the extracted base ([`Replay`], which [`crate::ops::restore`] runs before its checks).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::segment::{self, Reader, SegmentHeader};
use crate::location::{self, Location};

/// One stream: a base archive and the segments after it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// The base archive (an object of the location).
    pub base: String,
    /// When the base was made (seconds since the epoch, from its name).
    pub created: i64,
    /// The segments, from 0, up to the first missing one.
    pub segments: Vec<String>,
    /// Segments past a missing one (never replayed).
    pub orphaned: Vec<String>,
}

/// A transaction of a stream to restore to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point {
    /// The stream's base archive.
    pub base: String,
    /// The segments to replay, in order (the last one holds the transaction).
    pub segments: Vec<String>,
    /// The transaction's number in the stream.
    pub txid: u64,
    /// When the replicator read it (ms since the epoch).
    pub time_ms: i64,
}

/// What a stream holds after its base, for `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Segments, in order from 0.
    pub segments: u64,
    /// Segments past a missing one (never replayed).
    pub orphaned: u64,
    /// Bytes of the segments.
    pub bytes: u64,
    /// The first transaction one can restore to: its number and when it was read (RFC 3339,
    /// milliseconds); none while no segment holds one (the base alone).
    pub first: Option<(u64, String)>,
    /// The last one.
    pub last: Option<(u64, String)>,
}

/// The streams of backups `name` in `loc`, oldest base first. Segments whose base is gone are
/// left out.
pub fn streams(loc: &dyn Location, name: &str) -> Result<Vec<Stream>> {
    Ok(streams_in(&loc.list()?)
        .into_iter()
        .filter(|s| crate::model::naming::parse_backup_name(&s.base).is_some_and(|(g, _)| g == name))
        .collect())
}

/// The streams among `objects` (a location's listing), of every name, oldest base first.
pub fn streams_in(objects: &[location::ObjectMeta]) -> Vec<Stream> {
    let mut by_stream: std::collections::HashMap<String, Vec<(u64, String)>> = Default::default();
    for o in objects {
        if let Some((stream, seq)) = segment::parse_name(&o.name) {
            by_stream.entry(stream).or_default().push((seq, o.name.clone()));
        }
    }
    let mut out: Vec<Stream> = Vec::new();
    for m in objects {
        if !crate::model::naming::is_archive_name(&m.name) {
            continue;
        }
        let Some((_, created)) = crate::model::naming::parse_backup_name(&m.name) else {
            continue;
        };
        let Some(mut segs) = by_stream.remove(&segment::stream_of(&m.name)) else {
            continue;
        };
        segs.sort();
        let whole = segs
            .iter()
            .enumerate()
            .take_while(|(i, (seq, _))| *i as u64 == *seq)
            .count();
        let orphaned = segs.split_off(whole).into_iter().map(|(_, n)| n).collect();
        out.push(Stream {
            base: m.name.clone(),
            created,
            segments: segs.into_iter().map(|(_, n)| n).collect(),
            orphaned,
        });
    }
    out.sort_by_key(|s| (s.created, crate::model::naming::sequence(&s.base)));
    out
}

/// The points of a segment's header one can restore to (a stream's segment 0 starts with
/// frames the base may hold: only its last transaction counts).
pub(crate) fn points(h: &SegmentHeader) -> &[segment::Commit] {
    if h.prefix {
        &h.commits[h.commits.len().saturating_sub(1)..]
    } else {
        &h.commits
    }
}

/// The last replicated transaction of `name` in `loc` read at or before `at_ms` (any time when
/// `None`), in the newest stream that has one. `None` when no stream has such a point.
pub fn find_point(
    loc: &dyn Location,
    name: &str,
    at_ms: Option<i64>,
    ids: &crate::format::crypt::Identities,
) -> Result<Option<Point>> {
    for stream in streams(loc, name)?.into_iter().rev() {
        if at_ms.is_some_and(|t| stream.created * 1000 > t) {
            continue;
        }
        for (i, seg) in stream.segments.iter().enumerate().rev() {
            let h = Reader::open(loc, seg, ids)?.header;
            let found = points(&h)
                .iter()
                .rev()
                .find(|c| at_ms.is_none_or(|t| c.time_ms <= t));
            if let Some(c) = found {
                return Ok(Some(Point {
                    base: stream.base.clone(),
                    segments: stream.segments[..=i].to_vec(),
                    txid: c.txid,
                    time_ms: c.time_ms,
                }));
            }
        }
    }
    Ok(None)
}

/// What a restore of the newest state of a name (at or before a time) reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Newest {
    /// A replicated transaction: a stream's base and segments.
    Point(Point),
    /// An archive (a backup, or a replicator's base with no segment after it yet) at least as
    /// new as every replicated point.
    Archive(String),
}

/// The newest state of `name` in `loc` at or before `at_ms` (any time when `None`): the last
/// replicated transaction ([`find_point`]), unless the newest archive ([`crate::ops::chain::latest`])
/// is at least as new. Archives' names give seconds; within the point's second the archive's
/// manifest (`snapshot_at`) decides, so that a base taken after a gap, with nothing committed
/// since, is not passed over for the older stream before it.
pub fn newest_state(
    ctx: &crate::ops::Context,
    loc: &dyn Location,
    name: &str,
    at_ms: Option<i64>,
) -> Result<Option<Newest>> {
    let point = find_point(loc, name, at_ms, ctx.identities())?;
    let archive = crate::ops::chain::latest(ctx, loc, name, at_ms.map(|ms| ms.div_euclid(1000)))?;
    let (point, archive) = match (point, archive) {
        (Some(p), Some(a)) => (p, a),
        (p, a) => return Ok(p.map(Newest::Point).or(a.map(Newest::Archive))),
    };
    let Some((_, created)) = crate::model::naming::parse_backup_name(&archive) else {
        return Ok(Some(Newest::Point(point)));
    };
    let second = point.time_ms.div_euclid(1000);
    let newer = created > second
        || (created == second && {
            // Same second: the instant the archive's state was the database's (one whose
            // manifest cannot be read counts as the start of its second).
            let offset_ms = crate::format::dump::read_manifest(&loc.object_path(&archive), ctx.identities())
                .map(|m| m.snapshot_offset_ns(created) / 1_000_000)
                .unwrap_or(0);
            let ms = created * 1000 + offset_ms as i64;
            ms >= point.time_ms && at_ms.is_none_or(|t| ms <= t)
        });
    Ok(Some(if newer {
        Newest::Archive(archive)
    } else {
        Newest::Point(point)
    }))
}

/// RFC 3339 UTC with milliseconds.
pub fn format_time_ms(ms: i64) -> String {
    let secs = crate::model::naming::format_time(ms.div_euclid(1000));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// The span of `stream` (reads its first and last segments' headers); `sizes` are the
/// objects' sizes by name.
pub fn span(
    ids: &crate::format::crypt::Identities,
    loc: &dyn Location,
    stream: &Stream,
    sizes: &std::collections::HashMap<String, u64>,
) -> Result<Span> {
    let mut first = None;
    for seg in &stream.segments {
        if let Some(c) = points(&Reader::open(loc, seg, ids)?.header).first() {
            first = Some((c.txid, format_time_ms(c.time_ms)));
            break;
        }
    }
    let last = match stream.segments.last() {
        Some(seg) => points(&Reader::open(loc, seg, ids)?.header)
            .last()
            .map(|c| (c.txid, format_time_ms(c.time_ms))),
        None => None,
    };
    Ok(Span {
        segments: stream.segments.len() as u64,
        orphaned: stream.orphaned.len() as u64,
        bytes: stream.segments.iter().filter_map(|s| sizes.get(s)).sum(),
        first,
        last,
    })
}

/// Frames to replay onto an extracted base before a restore's checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replay {
    /// The location of the segments.
    pub location: PathBuf,
    /// The point.
    pub point: Point,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The transaction restored to.
    pub txid: u64,
    /// When it was read (RFC 3339).
    pub time: String,
    /// Segments read.
    pub segments: u64,
    /// Pages written (each segment's last version of each page it changed).
    pub frames: u64,
}

impl Replay {
    /// Writes the point's frames into `file` (the extracted base, pages of `page_size`),
    /// checking each segment's checksum, order and stream, and cuts the file to the
    /// database's size after the point's transaction. Segments are decoded on several threads
    /// (a few at a time, so memory stays bounded) and applied in order.
    pub fn apply(
        &self,
        file: &File,
        db_path: &Path,
        page_size: u32,
        ids: &crate::format::crypt::Identities,
    ) -> Result<Replayed> {
        let loc = location::open(&self.location)?;
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let last = self.point.segments.len().saturating_sub(1);
        let mut frames = 0u64;
        let mut next_txid = 1u64;
        let mut size: Option<u32> = None;
        let mut reached = false;
        let names: Vec<(usize, &String)> = self.point.segments.iter().enumerate().collect();
        for window in names.chunks(workers * 2) {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let slots: Vec<std::sync::Mutex<Option<Result<Decoded>>>> =
                window.iter().map(|_| std::sync::Mutex::new(None)).collect();
            std::thread::scope(|scope| {
                for _ in 0..workers.min(window.len()) {
                    scope.spawn(|| loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(i, seg)) = window.get(k) else { break };
                        let target = (i == last).then_some(self.point.txid);
                        let decoded = self.decode(loc.as_ref(), seg, i, page_size, target, ids);
                        if let Ok(mut slot) = slots[k].lock() {
                            *slot = Some(decoded);
                        }
                    });
                }
            });
            for slot in slots {
                let d = slot
                    .into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Err(Error::InvalidOption("a segment decoder stopped".into())))?;
                if d.first_txid.is_some_and(|t| t != next_txid) {
                    return Err(Error::bad_archive(&d.path, "a transaction is missing before it"));
                }
                next_txid = d.last_txid.map_or(next_txid, |t| t + 1);
                for (pgno, data) in &d.latest {
                    let at = u64::from(pgno - 1) * u64::from(page_size);
                    file.write_all_at(data, at)
                        .map_err(|e| Error::io("write", db_path, e))?;
                }
                frames += d.latest.len() as u64;
                size = d.db_pages.or(size);
                reached |= d.reached;
            }
        }
        if !reached {
            return Err(Error::bad_archive(
                loc.object_path(self.point.segments.last().map_or("", |s| s.as_str())),
                format!("transaction {} is not in it", self.point.txid),
            ));
        }
        if let Some(pages) = size {
            file.set_len(u64::from(pages) * u64::from(page_size))
                .map_err(|e| Error::io("truncate", db_path, e))?;
        }
        Ok(Replayed {
            txid: self.point.txid,
            time: crate::model::naming::format_time(self.point.time_ms / 1000),
            segments: self.point.segments.len() as u64,
            frames,
        })
    }

    /// Reads and checks segment `seq` of the point's stream: the last version of each page it
    /// changed (up to transaction `target` when given), once the whole segment matched its hash.
    fn decode(
        &self,
        loc: &dyn Location,
        seg: &str,
        seq: usize,
        page_size: u32,
        target: Option<u64>,
        ids: &crate::format::crypt::Identities,
    ) -> Result<Decoded> {
        let mut r = Reader::open(loc, seg, ids)?;
        let path = loc.object_path(seg);
        let h = r.header.clone();
        if h.seq != seq as u64 || h.base != self.point.base {
            return Err(Error::bad_archive(
                &path,
                "it is not the next segment of its stream",
            ));
        }
        if h.page_size != page_size {
            return Err(Error::bad_archive(
                &path,
                format!("page size {} where the base has {page_size}", h.page_size),
            ));
        }
        let mut out = Decoded {
            path,
            latest: Default::default(),
            first_txid: h.commits.first().map(|c| c.txid),
            last_txid: h.commits.last().map(|c| c.txid),
            db_pages: None,
            reached: false,
        };
        let mut commits = h.commits.iter().peekable();
        let mut page = Vec::new();
        let mut n = 0u64;
        while let Some(pgno) = r.next_frame(&mut page)? {
            n += 1;
            if !out.reached {
                out.latest.insert(pgno, std::mem::take(&mut page));
            }
            while let Some(c) = commits.next_if(|c| c.end == n) {
                if !out.reached {
                    out.db_pages = Some(c.db_pages);
                    out.reached = target == Some(c.txid);
                }
            }
        }
        // `next_frame` returned None: the whole segment matched its hash.
        Ok(out)
    }
}

/// One segment, read and checked, ready to be applied.
struct Decoded {
    path: std::path::PathBuf,
    latest: std::collections::BTreeMap<u32, Vec<u8>>,
    first_txid: Option<u64>,
    last_txid: Option<u64>,
    /// The database size after the last transaction applied from it.
    db_pages: Option<u32>,
    /// Whether it holds the point's transaction.
    reached: bool,
}
