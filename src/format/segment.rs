//! The replication segment: one object holding the WAL frames of consecutive committed
//! transactions, as `litevault replicate` ships them (docs/replication.md). A segment is zstd
//! over: the line `LVWAL1`, one line of JSON ([`SegmentHeader`]: the stream it continues, its
//! sequence number, each transaction's number, time and database size, the BLAKE3 of the
//! frames), then the frames, each a big-endian u32 page number and the page. Segments are named
//! `<stream>.<seq, 8 digits>.lvwal`, where the stream is the name of the base archive they
//! apply to without its extension, so one stream's segments list together, in order.

use std::io::{BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::location::{CreateOptions, Location, Published};

/// The extension of a segment object.
pub const EXTENSION: &str = ".lvwal";
const MAGIC: &[u8] = b"LVWAL1\n";
/// The largest header line accepted (a segment holds at most some thousand transactions).
const MAX_HEADER: u64 = 64 << 20;

/// One committed transaction in a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Its number in the stream (from 1, no gaps).
    pub txid: u64,
    /// Frames of the segment up to and including this transaction's commit frame.
    pub end: u64,
    /// When the replicator read it (milliseconds since the epoch): the time a restore `--at`
    /// compares with.
    pub time_ms: i64,
    /// The database size in pages after it.
    pub db_pages: u32,
}

/// What a segment says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    /// The format's version (1).
    pub format: u32,
    /// The name of the backups (the database's name in the location).
    pub name: String,
    /// The base archive the stream applies to (an object of the same location).
    pub base: String,
    /// The segment's number in the stream (from 0, no gaps).
    pub seq: u64,
    /// The database page size.
    pub page_size: u32,
    /// The transactions, in order.
    pub commits: Vec<Commit>,
    /// Frames in the segment.
    pub frames: u64,
    /// BLAKE3 (hex) of the frame bytes.
    pub blake3: String,
    /// Segment 0 of a stream starts with frames the base may already hold: only its last
    /// transaction is a point to restore to.
    pub prefix: bool,
}

/// The stream name of a base archive: its object name up to its extension.
pub fn stream_of(base: &str) -> String {
    match base.find(".tar").or_else(|| base.find('.')) {
        Some(i) => base[..i].to_string(),
        None => base.to_string(),
    }
}

/// The object name of segment `seq` of `stream`.
pub fn object_name(stream: &str, seq: u64) -> String {
    format!("{stream}.{seq:08}{EXTENSION}")
}

/// `(stream, seq)` of a segment object's name.
pub fn parse_name(name: &str) -> Option<(String, u64)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (stream, seq) = stem.rsplit_once('.')?;
    if seq.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) || stream.is_empty() {
        return None;
    }
    Some((stream.to_string(), seq.parse().ok()?))
}

/// A segment being gathered: frames and their transactions.
#[derive(Debug, Default)]
pub struct Builder {
    frames: Vec<u8>,
    count: u64,
    commits: Vec<Commit>,
}

impl Builder {
    /// Adds one frame (`commit`: the database size after it, for a commit frame).
    pub fn push(&mut self, pgno: u32, page: &[u8]) {
        self.frames.extend_from_slice(&pgno.to_be_bytes());
        self.frames.extend_from_slice(page);
        self.count += 1;
    }

    /// The frames gathered, each a big-endian page number, then the page.
    pub fn frames(&self) -> &[u8] {
        &self.frames
    }

    /// The frames gathered, each a big-endian page number and a page: WAL frames are read
    /// straight into it ([`crate::sqlite::wal::read_committed`]), then [`Builder::commit`]
    /// ends each transaction.
    pub fn frames_mut(&mut self) -> &mut Vec<u8> {
        &mut self.frames
    }

    /// Ends a transaction at the frames pushed so far.
    pub fn commit(&mut self, txid: u64, time_ms: i64, db_pages: u32) {
        self.commit_at(self.count, txid, time_ms, db_pages);
    }

    /// Ends a transaction after the first `frames` frames of [`Builder::frames_mut`].
    pub fn commit_at(&mut self, frames: u64, txid: u64, time_ms: i64, db_pages: u32) {
        self.count = frames;
        self.commits.push(Commit {
            txid,
            end: frames,
            time_ms,
            db_pages,
        });
    }

    /// Whether it holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.commits.is_empty()
    }

    /// Transactions gathered.
    pub fn transactions(&self) -> u64 {
        self.commits.len() as u64
    }

    /// Bytes of frames gathered.
    pub fn bytes(&self) -> usize {
        self.frames.len()
    }

    /// The last transaction gathered.
    pub fn last(&self) -> Option<&Commit> {
        self.commits.last()
    }

    /// Writes the segment as object [`object_name`]`(stream_of(base), seq)` of `loc`, then
    /// starts an empty one; on failure it keeps what it holds (to be written again). Frames
    /// pushed after the last commit are not written.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        loc: &dyn Location,
        name: &str,
        base: &str,
        seq: u64,
        page_size: u32,
        prefix: bool,
        encrypt: Option<&crate::format::crypt::Encryption>,
    ) -> Result<Published> {
        let end = self.commits.last().map_or(0, |c| c.end);
        let frame_len = 4 + page_size as usize;
        let frames = &self.frames[..(end as usize * frame_len).min(self.frames.len())];
        let header = SegmentHeader {
            format: 1,
            name: name.to_string(),
            base: base.to_string(),
            seq,
            page_size,
            commits: self.commits.clone(),
            frames: end,
            blake3: blake3::hash(frames).to_hex().to_string(),
            prefix,
        };
        let object = object_name(&stream_of(base), seq);
        let path = loc.object_path(&object);
        let mut out = loc.create(&object, &CreateOptions::default())?;
        if let Some(enc) = encrypt {
            out = crate::format::crypt::encrypting(out, enc, 0, &path)?;
        }
        let mut z = zstd::stream::Encoder::new(&mut out, 3).map_err(|e| Error::io("compress", &path, e))?;
        let line =
            serde_json::to_vec(&header).map_err(|e| Error::io("encode", &path, std::io::Error::other(e)))?;
        z.write_all(MAGIC)
            .and_then(|()| z.write_all(&line))
            .and_then(|()| z.write_all(b"\n"))
            .and_then(|()| z.write_all(frames))
            .and_then(|()| z.finish().map(drop))
            .map_err(|e| Error::io("write", &path, e))?;
        let published = out.finish(None)?;
        *self = Builder::default();
        Ok(published)
    }
}

/// A segment read back: its header, then its frames on demand.
pub struct Reader {
    /// The header.
    pub header: SegmentHeader,
    input: Box<dyn BufRead + Send>,
    hash: blake3::Hasher,
    /// Frames read from `input` (and hashed).
    read: u64,
    /// Frames handed out by [`Reader::next_frame`].
    given: u64,
    /// Frames read ahead, as stored (page number, page), hashed as one run: BLAKE3 goes several
    /// times faster on long inputs than page by page behind a 4-byte page number.
    batch: Vec<u8>,
    at: usize,
    path: std::path::PathBuf,
}

/// Bytes of frames a [`Reader`] reads and hashes at a time (at least one frame).
const BATCH_BYTES: usize = 256 << 10;

fn damaged(path: &std::path::Path, detail: impl Into<String>) -> Error {
    Error::bad_archive(path, detail)
}

/// A read error: a download cut short is a network failure, anything else a damaged segment.
fn read_error(path: &std::path::Path, e: std::io::Error, what: &str) -> Error {
    crate::location::download_error(path, &e).unwrap_or_else(|| damaged(path, format!("{what} ({e})")))
}

impl Reader {
    /// Opens segment `object` of `loc` and reads its header (decrypting it with `ids` when it
    /// is stored encrypted).
    pub fn open(loc: &dyn Location, object: &str, ids: &crate::format::crypt::Identities) -> Result<Reader> {
        let path = loc.object_path(object);
        let (_, raw) = crate::format::crypt::plaintext(&path, loc.read_stream(object)?, ids)?;
        let z = zstd::stream::Decoder::new(raw).map_err(|e| Error::io("decompress", &path, e))?;
        let mut input: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(1 << 20, z));
        let mut magic = [0u8; MAGIC.len()];
        input
            .read_exact(&mut magic)
            .map_err(|e| read_error(&path, e, "not a litevault WAL segment"))?;
        if magic != MAGIC {
            return Err(damaged(&path, "not a litevault WAL segment"));
        }
        let mut line = Vec::new();
        (&mut input)
            .take(MAX_HEADER)
            .read_until(b'\n', &mut line)
            .map_err(|e| read_error(&path, e, "its header is cut short"))?;
        let header: SegmentHeader =
            serde_json::from_slice(&line).map_err(|e| damaged(&path, format!("its header: {e}")))?;
        if header.format != 1 {
            return Err(damaged(
                &path,
                format!("segment format {} is not known", header.format),
            ));
        }
        if !(512..=65536).contains(&header.page_size) || !header.page_size.is_power_of_two() {
            return Err(damaged(&path, format!("page size {}", header.page_size)));
        }
        let ends_ok = header
            .commits
            .windows(2)
            .all(|w| w[0].end <= w[1].end && w[1].txid == w[0].txid + 1)
            && header.commits.last().is_none_or(|c| c.end == header.frames);
        if !ends_ok {
            return Err(damaged(&path, "its transactions are out of order"));
        }
        Ok(Reader {
            header,
            input,
            hash: blake3::Hasher::new(),
            read: 0,
            given: 0,
            batch: Vec::new(),
            at: 0,
            path,
        })
    }

    /// The next frame (page number, page) into `page`; `None` after the last, once the
    /// frames' BLAKE3 hash has been checked against the header's.
    pub fn next_frame(&mut self, page: &mut Vec<u8>) -> Result<Option<u32>> {
        let ps = self.header.page_size as usize;
        if self.given == self.header.frames {
            let mut rest = [0u8; 1];
            let trailing = self
                .input
                .read(&mut rest)
                .map_err(|e| Error::io("read", &self.path, e))?;
            let sum = self.hash.finalize().to_hex().to_string();
            if trailing != 0 || sum != self.header.blake3 {
                return Err(damaged(&self.path, "its frames do not match their checksum"));
            }
            return Ok(None);
        }
        if self.at == self.batch.len() {
            let per_batch = (BATCH_BYTES / (4 + ps)).max(1) as u64;
            let n = per_batch.min(self.header.frames - self.read) as usize;
            self.batch.resize(n * (4 + ps), 0);
            self.input
                .read_exact(&mut self.batch)
                .map_err(|e| read_error(&self.path, e, "its frames are cut short"))?;
            self.hash.update(&self.batch);
            self.read += n as u64;
            self.at = 0;
        }
        let record = &self.batch[self.at..self.at + 4 + ps];
        self.at += 4 + ps;
        self.given += 1;
        let pgno = u32::from_be_bytes([record[0], record[1], record[2], record[3]]);
        page.clear();
        page.extend_from_slice(&record[4..]);
        if pgno == 0 {
            return Err(damaged(&self.path, "a frame of page 0"));
        }
        Ok(Some(pgno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_not_backups() {
        let base = "app-20261206T170000Z-2.tar.zst";
        assert_eq!(stream_of(base), "app-20261206T170000Z-2");
        let n = object_name(&stream_of(base), 7);
        assert_eq!(n, "app-20261206T170000Z-2.00000007.lvwal");
        assert_eq!(parse_name(&n), Some(("app-20261206T170000Z-2".into(), 7)));
        assert!(!crate::model::naming::is_backup_name(&n));
        assert_eq!(parse_name("app.7.lvwal"), None);
    }

    #[test]
    fn a_segment_round_trips_and_a_flipped_byte_is_caught() {
        let loc = crate::location::memory::open("mem://segment-round-trip").unwrap();
        let mut b = Builder::default();
        b.push(1, &[7u8; 512]);
        b.push(2, &[8u8; 512]);
        b.commit(1, 1000, 2);
        b.push(3, &[9u8; 512]); // never committed: dropped
        let p = b
            .write(
                loc.as_ref(),
                "app",
                "app-20261206T170000Z.tar.zst",
                0,
                512,
                true,
                None,
            )
            .unwrap();
        assert!(b.is_empty());
        let ids = crate::format::crypt::Identities::new();
        let mut r = Reader::open(loc.as_ref(), &p.name, &ids).unwrap();
        assert_eq!(r.header.frames, 2);
        assert!(r.header.prefix);
        let mut page = Vec::new();
        assert_eq!(r.next_frame(&mut page).unwrap(), Some(1));
        assert_eq!(page, vec![7u8; 512]);
        assert_eq!(r.next_frame(&mut page).unwrap(), Some(2));
        assert_eq!(r.next_frame(&mut page).unwrap(), None);

        // The same segment with one byte of a page changed: its frames fail their checksum.
        let raw = loc.read_range(&p.name, 0, u64::MAX).unwrap();
        let mut plain = zstd::decode_all(&raw[..]).unwrap();
        let last = plain.len() - 1;
        plain[last] ^= 1;
        let tampered = "app-20261206T170000Z.00000001.lvwal";
        let mut out = loc.create(tampered, &CreateOptions::default()).unwrap();
        out.write_all(&zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
        out.finish(None).unwrap();
        let mut r = Reader::open(loc.as_ref(), tampered, &ids).unwrap();
        let err = loop {
            match r.next_frame(&mut page) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a changed page was not noticed"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn frames_across_read_batches_come_back_in_order_and_damage_in_a_later_batch_is_caught() {
        let loc = crate::location::memory::open("mem://segment-batches").unwrap();
        let ps = 4096usize;
        // 150 frames of 4 KiB: three read batches of at most 256 KiB.
        let mut b = Builder::default();
        for n in 1..=150u32 {
            b.push(n, &vec![(n % 251) as u8; ps]);
        }
        b.commit(1, 1000, 150);
        let p = b
            .write(
                loc.as_ref(),
                "app",
                "app-20261206T170000Z.tar.zst",
                0,
                ps as u32,
                true,
                None,
            )
            .unwrap();
        let ids = crate::format::crypt::Identities::new();
        let mut r = Reader::open(loc.as_ref(), &p.name, &ids).unwrap();
        let mut page = Vec::new();
        for n in 1..=150u32 {
            assert_eq!(r.next_frame(&mut page).unwrap(), Some(n));
            assert_eq!(page, vec![(n % 251) as u8; ps], "frame {n}");
        }
        assert_eq!(r.next_frame(&mut page).unwrap(), None);

        let raw = loc.read_range(&p.name, 0, u64::MAX).unwrap();
        let plain = zstd::decode_all(&raw[..]).unwrap();
        let put = |name: &str, bytes: &[u8]| {
            let mut out = loc.create(name, &CreateOptions::default()).unwrap();
            out.write_all(&zstd::encode_all(bytes, 3).unwrap()).unwrap();
            out.finish(None).unwrap();
        };
        let drain = |name: &str| -> Error {
            let mut r = Reader::open(loc.as_ref(), name, &ids).unwrap();
            let mut page = Vec::new();
            loop {
                match r.next_frame(&mut page) {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{name}: the damage was not noticed"),
                    Err(e) => break e,
                }
            }
        };
        // One byte of frame 140 (the third batch) changed.
        let mut changed = plain.clone();
        let at = plain.len() - 10 * (4 + ps) - 100;
        changed[at] ^= 1;
        put("app-20261206T170000Z.00000001.lvwal", &changed);
        let e = drain("app-20261206T170000Z.00000001.lvwal");
        assert!(e.to_string().contains("checksum"), "{e}");
        // Cut in the middle of the second batch.
        let cut = &plain[..plain.len() - 80 * (4 + ps)];
        put("app-20261206T170000Z.00000002.lvwal", cut);
        let e = drain("app-20261206T170000Z.00000002.lvwal");
        assert!(e.to_string().contains("cut short"), "{e}");
    }
}
