//! Page sets: the per-page hashes every archive records, and the changed pages an incremental
//! archive holds.
//!
//! A page hash is the first 16 bytes of BLAKE3 in keyed mode (a keyed cryptographic hash, a MAC) of
//! the page, where the key is 32 random bytes chosen by a chain's full backup and kept by every
//! link of that chain (recorded in each manifest). Page content cannot be crafted to match a given
//! page's hash without breaking BLAKE3 (a second preimage), and the key rules out tables of
//! precomputed pages. An incremental archive is identified by its table alone (no SHA-256 of the
//! whole database, which would read every byte a second time): a restore hashes each page of the
//! composed database under the chain's key and compares the table's SHA-256 with the newest link's
//! manifest. The bound, plainly: the key is in every manifest (in clear unless the archive is
//! encrypted), so someone who can both write the source database and read its backups could, with
//! about 2^64 BLAKE3 evaluations, craft two versions of a page that hash alike; a backup taken
//! after the second would leave that page out, and the restore would give the first without
//! noticing. Accidental damage, and anyone without write access to the source, are caught (a second
//! preimage: 2^128).
//!
//! The table of a database's page hashes is the entry `pages.hashes` (page_count x 16 bytes,
//! page 1 first). In a zstd archive it has a zstd frame of its own whose byte range in the
//! archive file the manifest records, so an incremental backup reads its parent's table with
//! one range read of about page_count x 16 bytes, without reading its pages.
//!
//! An incremental archive's `pages.bin` entry is the changed pages in page order, each a 4-byte
//! big-endian page number followed by the page.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Name of the tar entry with the page-hash table.
pub const HASHES_ENTRY: &str = "pages.hashes";
/// Name of an incremental archive's tar entry with the changed pages.
pub const PAGES_ENTRY: &str = "pages.bin";
/// Bytes of one page hash.
pub const HASH_LEN: usize = 16;
/// The algorithm recorded in manifests.
pub const ALGORITHM: &str = "blake3-keyed-128";

/// What a manifest records about its archive's page-hash table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageHashes {
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The chain's key, hex.
    pub key: String,
    /// Hashes in the table (the database's page count).
    pub count: u64,
    /// SHA-256 of the table's bytes.
    pub sha256: String,
    /// Byte range of the zstd frame holding the `pages.hashes` entry in the archive file (zstd
    /// archives only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<(u64, u64)>,
}

/// A page hash.
pub type PageHash = [u8; HASH_LEN];

/// Bytes of a chain's key.
pub const KEY_LEN: usize = 32;

/// A chain's key.
pub type Key = [u8; KEY_LEN];

/// Random bytes for a new chain's key.
pub fn new_key() -> io::Result<Key> {
    let mut key = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    Ok(key)
}

/// Parses a hex key.
pub fn parse_key(hex_key: &str) -> Option<Key> {
    if hex_key.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(hex_key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// The hash of one page under `key`.
pub fn page_hash(key: &Key, page: &[u8]) -> PageHash {
    let d = blake3::keyed_hash(key, page);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&d.as_bytes()[..HASH_LEN]);
    out
}

/// A table's bytes.
pub fn encode(hashes: &[PageHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.iter().copied()).collect()
}

/// Parses a table's bytes (a whole number of hashes).
pub fn decode(bytes: &[u8]) -> Option<Vec<PageHash>> {
    if !bytes.len().is_multiple_of(HASH_LEN) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(HASH_LEN)
            .map(|c| {
                let mut h = [0u8; HASH_LEN];
                h.copy_from_slice(c);
                h
            })
            .collect(),
    )
}

/// Receives a database's pages in order (in writes of any size) and hashes each one; with a
/// parent table, also keeps the pages that differ from it (or are beyond its end) in an
/// unnamed temp file (see [`Finished::changed`]). `inner` (if any) gets every byte, for a
/// full archive's `database.sqlite` entry.
pub struct PageHasher<W: Write> {
    inner: W,
    key: Key,
    page_size: usize,
    partial: Vec<u8>,
    hashes: Vec<PageHash>,
    parent: Option<Vec<PageHash>>,
    changed: Option<io::BufWriter<std::fs::File>>,
    changed_count: u64,
}

impl<W: Write> PageHasher<W> {
    /// Hashes pages of `page_size` bytes under `key`; `parent` is the table to compare with.
    pub fn new(inner: W, key: Key, page_size: u32, parent: Option<Vec<PageHash>>) -> io::Result<Self> {
        let changed = match parent {
            Some(_) => Some(io::BufWriter::with_capacity(1 << 20, tempfile::tempfile()?)),
            None => None,
        };
        Ok(PageHasher {
            inner,
            key,
            page_size: page_size as usize,
            partial: Vec::with_capacity(page_size as usize),
            hashes: Vec::new(),
            parent,
            changed,
            changed_count: 0,
        })
    }

    fn page(&mut self, page: &[u8]) -> io::Result<()> {
        let h = page_hash(&self.key, page);
        let pgno = self.hashes.len() as u64 + 1;
        if let Some(changed) = &mut self.changed {
            let same = self
                .parent
                .as_ref()
                .and_then(|p| p.get(pgno as usize - 1))
                .is_some_and(|old| *old == h);
            if !same {
                changed.write_all(&(pgno as u32).to_be_bytes())?;
                changed.write_all(page)?;
                self.changed_count += 1;
            }
        }
        self.hashes.push(h);
        Ok(())
    }

    /// The pages' hashes so far.
    pub fn hashes(&self) -> &[PageHash] {
        &self.hashes
    }

    /// Pages that differ from the parent's.
    pub fn changed_count(&self) -> u64 {
        self.changed_count
    }

    /// Ends the stream: returns `inner`, the table, and the changed
    /// pages (`pages.bin` records, ready to be read from their start) when there was a parent.
    pub fn finish(mut self) -> io::Result<Finished<W>> {
        if !self.partial.is_empty() {
            return Err(io::Error::other(format!(
                "the database ends inside a page ({} bytes of {})",
                self.partial.len(),
                self.page_size
            )));
        }
        let changed = match self.changed.take() {
            Some(w) => {
                let mut f = w.into_inner().map_err(|e| e.into_error())?;
                io::Seek::seek(&mut f, io::SeekFrom::Start(0))?;
                Some(f)
            }
            None => None,
        };
        Ok(Finished {
            inner: self.inner,
            hashes: self.hashes,
            changed,
            changed_count: self.changed_count,
        })
    }
}

/// What [`PageHasher::finish`] returns.
pub struct Finished<W> {
    /// The wrapped writer.
    pub inner: W,
    /// Every page's hash.
    pub hashes: Vec<PageHash>,
    /// The changed pages as `pages.bin` records.
    pub changed: Option<std::fs::File>,
    /// How many pages changed.
    pub changed_count: u64,
}

impl<W: Write> Write for PageHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        let mut rest = buf;
        if !self.partial.is_empty() {
            let need = self.page_size - self.partial.len();
            let take = need.min(rest.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.partial.len() == self.page_size {
                let page = std::mem::take(&mut self.partial);
                self.page(&page)?;
                self.partial = page;
                self.partial.clear();
            }
        }
        while rest.len() >= self.page_size {
            let (page, tail) = rest.split_at(self.page_size);
            self.page(page)?;
            rest = tail;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::hex;

    #[test]
    fn pages_are_hashed_whatever_the_write_sizes_and_changes_found() {
        let ps = 512u32;
        let key = [7u8; KEY_LEN];
        let db: Vec<u8> = (0..ps as usize * 6).map(|i| (i * 7 % 251) as u8).collect();
        let whole = |chunks: usize| {
            let mut h = PageHasher::new(Vec::new(), key, ps, None).unwrap();
            for c in db.chunks(chunks) {
                h.write_all(c).unwrap();
            }
            h.finish().unwrap()
        };
        let a = whole(100);
        let b = whole(4096);
        assert_eq!(a.hashes, b.hashes);
        assert_eq!(a.inner, db);
        assert_eq!(a.hashes.len(), 6);
        // Change page 3, grow by one page.
        let mut db2 = db.clone();
        db2[2 * 512 + 10] ^= 1;
        db2.extend_from_slice(&[9u8; 512]);
        let mut h = PageHasher::new(io::sink(), key, ps, Some(a.hashes.clone())).unwrap();
        h.write_all(&db2).unwrap();
        let f = h.finish().unwrap();
        assert_eq!(f.changed_count, 2);
        let mut recs = Vec::new();
        f.changed.unwrap().read_to_end(&mut recs).unwrap();
        assert_eq!(recs.len(), 2 * (4 + 512));
        assert_eq!(&recs[..4], &3u32.to_be_bytes());
        assert_eq!(&recs[4..516], &db2[1024..1536]);
        assert_eq!(&recs[516..520], &7u32.to_be_bytes());
        // Another key, other hashes.
        assert_ne!(
            page_hash(&[1; KEY_LEN], &db[..512]),
            page_hash(&[2; KEY_LEN], &db[..512])
        );
        assert_eq!(decode(&encode(&a.hashes)).unwrap(), a.hashes);
        assert_eq!(parse_key(&hex(&key)).unwrap(), key);
    }
}
