//! Reading SQLite's `-wal` file from outside SQLite, for replication: the header, the frames
//! and their running checksum (sqlite.org/fileformat2.html, "WAL file format"), and a
//! [`Cursor`] that says how far one generation of the WAL has been read. Only frames whose salts
//! equal the header's and whose cumulative checksum holds are returned, and only up to the last
//! commit frame among them: an open or torn transaction is never handed out.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes of the WAL header.
pub const HEADER_LEN: u64 = 32;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: u64 = 24;
const MAGIC: u32 = 0x377f_0682;
const VERSION: u32 = 3_007_000;

/// The header of a `-wal` file: what identifies one generation of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Checksums read their words big-endian (magic 0x377f0683) rather than little-endian.
    pub big_endian: bool,
    /// The database page size.
    pub page_size: u32,
    /// The checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt-1 and salt-2: salt-1 grows by one at each restart of the WAL, salt-2 is random.
    pub salt: [u32; 2],
    /// The header's checksum, the start of the frames' running checksum.
    pub checksum: [u32; 2],
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
pub fn checksum(big_endian: bool, s: [u32; 2], data: &[u8]) -> [u32; 2] {
    let [mut s1, mut s2] = s;
    for pair in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (be32(&pair[..4]), be32(&pair[4..]))
        } else {
            (
                u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        };
        s1 = s1.wrapping_add(x0).wrapping_add(s2);
        s2 = s2.wrapping_add(x1).wrapping_add(s1);
    }
    [s1, s2]
}

impl WalHeader {
    /// Parses and checks 32 header bytes; `None` when they are not a valid WAL header (a file
    /// being created, or not a WAL).
    pub fn parse(b: &[u8]) -> Option<WalHeader> {
        if b.len() < HEADER_LEN as usize {
            return None;
        }
        let magic = be32(&b[0..4]);
        if magic & !1 != MAGIC || be32(&b[4..8]) != VERSION {
            return None;
        }
        let big_endian = magic & 1 == 1;
        let page_size = be32(&b[8..12]);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let sum = checksum(big_endian, [0, 0], &b[..24]);
        if sum != [be32(&b[24..28]), be32(&b[28..32])] {
            return None;
        }
        Some(WalHeader {
            big_endian,
            page_size,
            checkpoint_seq: be32(&b[12..16]),
            salt: [be32(&b[16..20]), be32(&b[20..24])],
            checksum: sum,
        })
    }

    /// Reads the header of `wal`; `None` when the file is shorter than a header or holds no
    /// valid one.
    pub fn read(wal: &File) -> io::Result<Option<WalHeader>> {
        let mut b = [0u8; HEADER_LEN as usize];
        match wal.read_exact_at(&mut b, 0) {
            Ok(()) => Ok(WalHeader::parse(&b)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// How far one generation of the WAL has been read: the next frame's index and the running
/// checksum that frame must continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The generation's salts.
    pub salt: [u32; 2],
    /// Its checksum byte order.
    pub big_endian: bool,
    /// Its page size.
    pub page_size: u32,
    /// Index (from 0) of the next frame to read.
    pub next: u64,
    /// The running checksum after the frames before `next`.
    pub checksum: [u32; 2],
}

impl Cursor {
    /// A cursor at the first frame of the generation `h` starts.
    pub fn start(h: &WalHeader) -> Cursor {
        Cursor {
            salt: h.salt,
            big_endian: h.big_endian,
            page_size: h.page_size,
            next: 0,
            checksum: h.checksum,
        }
    }

    /// Bytes of one frame (header and page).
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN + u64::from(self.page_size)
    }

    fn offset(&self, frame: u64) -> u64 {
        HEADER_LEN + frame * self.frame_len()
    }
}

/// The end of a transaction among the frames [`read_committed`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitMark {
    /// The length of the output buffer once this transaction's frames are in it.
    pub len: usize,
    /// The database size in pages after it.
    pub db_pages: u32,
}

/// What [`read_committed`] found past the committed frames it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The end of the file.
    End,
    /// A frame that is not the generation's next (other salts, a broken checksum, a frame
    /// being written), at this index.
    Invalid,
    /// `max_bytes` was reached at a commit.
    Full,
}

/// Reads the frames of `cursor`'s generation from `cursor.next`, checking salts and the running
/// checksum, and appends those up to the last commit frame among the valid ones to `out`, each
/// as its big-endian page number then the page; `cursor` moves past them. Returns where each
/// transaction ends in `out`, why it stopped, and the index of the frame it stopped at (the
/// first one not valid, or past the end). Frames of a transaction not yet committed are left for
/// a later call. Stops at a commit once `max_bytes` were appended. `scratch` is the read
/// buffer, kept by the caller from call to call (it is zeroed only when it grows).
pub fn read_committed(
    wal: &File,
    cursor: &mut Cursor,
    max_bytes: u64,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> io::Result<(Vec<CommitMark>, Stop, u64)> {
    const CHUNK: u64 = 4 << 20;
    // The first read of a poll: what a few commits write. A reused `-wal` holds stale frames
    // of older generations past the last commit; reading all of them at each poll cost a copy
    // of the whole file per commit and kept a buffer that large (per database, in a daemon).
    const FIRST_CHUNK: u64 = 64 << 10;
    let frame_len = cursor.frame_len();
    let per_chunk = (CHUNK / frame_len).max(1);
    // Doubles after each chunk read whole and valid, up to CHUNK.
    let mut chunk_frames = (FIRST_CHUNK / frame_len).clamp(1, per_chunk);
    let mut marks = Vec::new();
    let mut at = *cursor;
    let committed_len = out.len();
    let mut kept = committed_len;
    // Sized by what the file holds past the cursor (a poll usually finds a few frames).
    let file_len = wal.metadata()?.len();
    let buf = scratch;
    let stop = 'read: loop {
        let offset = at.offset(at.next);
        let avail = file_len.saturating_sub(offset) / frame_len;
        if avail == 0 {
            break Stop::End;
        }
        let want = (avail.min(chunk_frames) * frame_len) as usize;
        chunk_frames = (chunk_frames * 2).min(per_chunk);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let n = read_full_at(wal, &mut buf[..want], offset)?;
        let whole = n as u64 / frame_len;
        for f in buf[..(whole * frame_len) as usize].chunks_exact(frame_len as usize) {
            let (head, page) = f.split_at(FRAME_HEADER_LEN as usize);
            if [be32(&head[8..12]), be32(&head[12..16])] != at.salt {
                break 'read Stop::Invalid;
            }
            let sum = checksum(
                at.big_endian,
                checksum(at.big_endian, at.checksum, &head[..8]),
                page,
            );
            if sum != [be32(&head[16..20]), be32(&head[20..24])] {
                break 'read Stop::Invalid;
            }
            out.extend_from_slice(&head[0..4]);
            out.extend_from_slice(page);
            at.next += 1;
            at.checksum = sum;
            let commit = be32(&head[4..8]);
            if commit != 0 {
                kept = out.len();
                *cursor = at;
                marks.push(CommitMark {
                    len: kept,
                    db_pages: commit,
                });
                if (kept - committed_len) as u64 >= max_bytes {
                    break 'read Stop::Full;
                }
            }
        }
        if n < want {
            break Stop::End;
        }
    };
    out.truncate(kept);
    Ok((marks, stop, at.next))
}

/// How many frames of the generation `h` starts are valid from its start (committed or not): the
/// part of the file that generation has written.
pub fn valid_frames(wal: &File, h: &WalHeader) -> io::Result<u64> {
    let mut c = Cursor::start(h);
    let frame_len = c.frame_len();
    let mut buf = vec![0u8; frame_len as usize];
    loop {
        if read_full_at(wal, &mut buf, c.offset(c.next))? < buf.len() {
            return Ok(c.next);
        }
        let (head, page) = buf.split_at(FRAME_HEADER_LEN as usize);
        if [be32(&head[8..12]), be32(&head[12..16])] != c.salt {
            return Ok(c.next);
        }
        let sum = checksum(c.big_endian, checksum(c.big_endian, c.checksum, &head[..8]), page);
        if sum != [be32(&head[16..20]), be32(&head[20..24])] {
            return Ok(c.next);
        }
        c.checksum = sum;
        c.next += 1;
    }
}

/// The salts in the header of frame `index` (`None` past the end of the file).
pub fn frame_salts(wal: &File, c: &Cursor, index: u64) -> io::Result<Option<[u32; 2]>> {
    let mut head = [0u8; FRAME_HEADER_LEN as usize];
    match wal.read_exact_at(&mut head, c.offset(index)) {
        Ok(()) => Ok(Some([be32(&head[8..12]), be32(&head[12..16])])),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a frame may follow `cursor` (its header has the generation's salts): the cheap test
/// of a poll, two small reads. A frame found is checked in full by [`read_committed`].
pub fn may_have_more(wal: &File, cursor: &Cursor) -> io::Result<bool> {
    let mut head = [0u8; FRAME_HEADER_LEN as usize];
    match wal.read_exact_at(&mut head, cursor.offset(cursor.next)) {
        Ok(()) => Ok([be32(&head[8..12]), be32(&head[12..16])] == cursor.salt),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_db(dir: &std::path::Path) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(dir.join("w.db")).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);")
            .unwrap();
        c
    }

    #[test]
    fn reads_committed_frames_and_stops_at_an_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let c = wal_db(dir.path());
        let wal = File::open(dir.path().join("w.db-wal")).unwrap();
        let h = WalHeader::read(&wal).unwrap().expect("a header");
        let mut cur = Cursor::start(&h);
        let mut out = Vec::new();
        let (marks, _, _) = read_committed(&wal, &mut cur, u64::MAX, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(marks.last().unwrap().len, out.len());
        let n = cur.next;
        c.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let mut more = Vec::new();
        let (marks, stop, _) = read_committed(&wal, &mut cur, u64::MAX, &mut more, &mut Vec::new()).unwrap();
        assert_eq!(marks.len(), 1);
        assert_eq!(stop, Stop::End);
        assert_eq!(cur.next, n + (more.len() / (4 + h.page_size as usize)) as u64);
        // A frame with a flipped byte breaks the chain: nothing past it is returned.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("w.db-wal"))
            .unwrap();
        c.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let off = cur.offset(cur.next) + FRAME_HEADER_LEN + 100;
        let mut b = [0u8; 1];
        wal.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 1], off).unwrap();
        let before = cur;
        let mut none = Vec::new();
        let (marks, stop, at) = read_committed(&wal, &mut cur, u64::MAX, &mut none, &mut Vec::new()).unwrap();
        assert_eq!(at, cur.next);
        assert!(none.is_empty() && marks.is_empty());
        assert_eq!(stop, Stop::Invalid);
        assert_eq!(cur, before);
        assert!(may_have_more(&wal, &cur).unwrap());
    }

    #[test]
    fn a_restart_changes_salt_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let c = wal_db(dir.path());
        let wal = File::open(dir.path().join("w.db-wal")).unwrap();
        let h1 = WalHeader::read(&wal).unwrap().unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(PASSIVE); INSERT INTO t VALUES (1);")
            .unwrap();
        let h2 = WalHeader::read(&wal).unwrap().unwrap();
        assert_eq!(h2.salt[0], h1.salt[0].wrapping_add(1));
        assert_ne!(h2.salt, h1.salt);
        assert!(valid_frames(&wal, &h2).unwrap() >= 1);
        assert!(WalHeader::parse(&[0u8; 32]).is_none());
    }
}
