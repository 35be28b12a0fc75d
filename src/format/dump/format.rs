//! The framing of a litevault dump: its header lines (identification, `created_at`, manifest)
//! and trailer (checksum), their prefixes and limits, and opening a dump (or anything restore
//! accepts) decompressed and telling what it holds. Everything else in `dump` builds on this.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::archive::{self, Compression};
use crate::format::crypt::Identities;
use crate::format::manifest::Manifest;

/// First line of every litevault dump (followed by an explanation on the same line).
pub const HEADER_PREFIX: &str = "-- litevault SQL dump";
/// Prefix of the creation-time line (line 2).
pub const CREATED_PREFIX: &str = "-- created_at: ";
/// Prefix of the manifest line (line 3).
pub const MANIFEST_PREFIX: &str = "-- manifest: ";
/// Prefix of the trailer line (the last line).
pub const TRAILER_PREFIX: &str = "-- end: ";
/// The longest statement a dump may hold, written or loaded (SQLite's own limit is 1 GB). It
/// bounds a load's memory whatever the input: the statement's text, and SQLite's copy of it
/// and of its values while it runs.
pub const MAX_STATEMENT: usize = 512 << 20;

/// The first line a dump starts with.
pub fn header_line() -> String {
    format!(
        "{HEADER_PREFIX} (format {}). Restore: litevault restore FILE NEW.db; plain text also loads with: sqlite3 NEW.db < FILE\n",
        crate::format::manifest::FORMAT
    )
}

/// The checksums at the end of a dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// SHA-256 of line 1, the manifest line and the data section.
    pub sha256: String,
    /// Bytes of the data section.
    pub data_bytes: u64,
    /// SQL statements in the data section.
    pub statements: u64,
}

/// The file-name extension of a dump with this compression, with its leading dot.
pub fn extension(compression: Compression) -> &'static str {
    match compression {
        Compression::Zstd => ".sql.zst",
        Compression::Gzip => ".sql.gz",
        Compression::None => ".sql",
    }
}

pub use crate::model::naming::is_dump_name;

/// What a file holds, told from its first bytes (after decompression).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A tar archive.
    Archive,
    /// SQL text written by litevault (it starts with [`HEADER_PREFIX`]).
    LitevaultDump,
    /// Other SQL text (e.g. `sqlite3 db .dump`).
    ForeignDump,
}

/// Whether the text `reader` starts with (its first statement, after blank lines and `--` or
/// `/* */` comments) begins with an SQL keyword a dump can hold: what tells an SQL dump from
/// other text (notes, a log) before it is loaded.
pub fn begins_with_sql_statement(reader: &mut dyn BufRead) -> bool {
    // Every keyword an SQLite statement can start with (the loader refuses the dangerous ones
    // by name and line, so they count as SQL here).
    const KEYWORDS: &[&str] = &[
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "COMMIT",
        "CREATE",
        "DELETE",
        "DETACH",
        "DROP",
        "END",
        "EXPLAIN",
        "INSERT",
        "PRAGMA",
        "REINDEX",
        "RELEASE",
        "REPLACE",
        "ROLLBACK",
        "SAVEPOINT",
        "SELECT",
        "UPDATE",
        "VACUUM",
        "VALUES",
        "WITH",
    ];
    let Ok(buf) = reader.fill_buf() else {
        return false;
    };
    let text = String::from_utf8_lossy(&buf[..buf.len().min(64 << 10)]);
    let mut rest = text.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    // Only comments (or nothing) in the first block: an empty dump is a dump.
    if rest.is_empty() {
        return true;
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    // A dot-command (`.shell`, `.read`) is the sqlite3 shell's: the loader refuses it by name.
    rest.starts_with(';') || rest.starts_with('.') || KEYWORDS.contains(&word.as_str())
}

/// Opens `path` decompressed (zstd, gzip or plain) and tells what it holds, without reading
/// more than its first block.
pub fn open(path: &Path, ids: &Identities) -> Result<(Compression, Content, Box<dyn BufRead>)> {
    open_inner(path, false, true, ids)
}

/// Like [`open`]; with `threaded`, a compressed file is decompressed by a second thread a few
/// MiB ahead of the reader (loading a dump then uses both cores).
pub fn open_with(
    path: &Path,
    threaded: bool,
    ids: &Identities,
) -> Result<(Compression, Content, Box<dyn BufRead>)> {
    open_inner(path, threaded, false, ids)
}

/// `head_only`: the caller reads only the first lines (a remote file is then range-read).
fn open_inner(
    path: &Path,
    threaded: bool,
    head_only: bool,
    ids: &Identities,
) -> Result<(Compression, Content, Box<dyn BufRead>)> {
    let (_, file) = crate::format::crypt::plaintext(path, crate::location::open_read(path, head_only)?, ids)?;
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let head = buf
        .fill_buf()
        .map_err(|e| crate::format::crypt::read_error(path, e))?;
    let compression = match head {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [0x1f, 0x8b, ..] => Compression::Gzip,
        _ => Compression::None,
    };
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| Error::io("start zstd decoder for", path, e))?;
            d.window_log_max(27)
                .map_err(|e| Error::io("configure zstd decoder for", path, e))?;
            Box::new(d)
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::None => Box::new(buf),
    };
    let reader: Box<dyn Read> = if threaded && compression != Compression::None {
        Box::new(ReadAhead::spawn(reader))
    } else {
        reader
    };
    // Small reads: a decoder asked for a large block of a cut file fails where the first lines
    // (the manifest) are still readable.
    let mut reader: Box<dyn BufRead> = Box::new(BufReader::with_capacity(8 << 10, reader));
    let head = reader.fill_buf().map_err(|e| bad(path, e))?;
    let content = if head.len() >= 262 && &head[257..262] == b"ustar" {
        Content::Archive
    } else if head.starts_with(HEADER_PREFIX.as_bytes()) {
        Content::LitevaultDump
    } else if looks_like_sql(head) {
        Content::ForeignDump
    } else if head.starts_with(crate::sqlite::db::SQLITE_MAGIC) {
        return Err(Error::bad_archive(
            path,
            "this is an SQLite database, not a litevault archive or SQL dump (back it up with `litevault backup`)",
        ));
    } else {
        return Err(Error::bad_archive(
            path,
            "not a litevault archive (neither zstd, gzip, tar nor SQL text)",
        ));
    };
    Ok((compression, content, reader))
}

/// Reads what a background thread reads from another reader, in 1 MiB chunks, at most 4
/// chunks ahead. Dropping it stops the thread at its next chunk.
struct ReadAhead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    fn spawn(mut inner: Box<dyn Read + Send>) -> ReadAhead {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            let result = loop {
                match inner.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let end = filled == 0;
            let msg = match result {
                Ok(()) => Ok(buf),
                Err(e) => {
                    // Deliver what was read before the error, then the error.
                    if filled > 0 && tx.send(Ok(buf)).is_err() {
                        return;
                    }
                    Err(e)
                }
            };
            let stop = end || msg.is_err();
            if tx.send(msg).is_err() || stop {
                return;
            }
        });
        ReadAhead {
            rx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    if chunk.is_empty() {
                        self.done = true;
                    }
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(std::io::Error::other("the decompression thread stopped"));
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn bad(path: &Path, e: std::io::Error) -> Error {
    if let Some(remote) = crate::location::download_error(path, &e) {
        return remote;
    }
    Error::bad_archive(path, format!("cannot decompress: {e}"))
}

/// Whether the first bytes look like SQL text: no NUL byte, and text starting with a comment,
/// a word or a dot-command (which the loader then refuses by name).
fn looks_like_sql(head: &[u8]) -> bool {
    let head = &head[..head.len().min(4096)];
    if head.contains(&0) {
        return false;
    }
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.is_empty()
        || t.starts_with("--")
        || t.starts_with("/*")
        || t.starts_with('.')
        || t.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Reads the manifest from a litevault dump's first lines (a few KiB of decompression).
pub fn read_manifest(path: &Path, ids: &Identities) -> Result<Manifest> {
    let (_, content, mut reader) = open(path, ids)?;
    match content {
        Content::LitevaultDump => read_header(path, &mut reader).map(|h| h.manifest),
        Content::ForeignDump => Err(Error::bad_archive(
            path,
            "not a litevault archive: text without a litevault manifest (if it is an SQL dump, restore it to see its content)",
        )),
        Content::Archive => archive::read_manifest(path, ids),
    }
}

/// The three header lines of a litevault dump, parsed.
#[derive(Debug, Clone)]
pub struct Header {
    /// The manifest, with `created_at` filled from line 2.
    pub manifest: Manifest,
    /// The raw bytes of line 1 and line 3, as hashed by the trailer's `sha256`.
    pub hashed: Vec<u8>,
}

/// The longest header line accepted (a manifest of a million tables is far below).
const MAX_HEADER_LINE: u64 = 64 << 20;

/// Reads and checks the three header lines.
pub fn read_header(path: &Path, reader: &mut dyn BufRead) -> Result<Header> {
    let mut line = |what: &str| -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let n = reader
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| bad(path, e))?;
        if n == 0 || !buf.ends_with(b"\n") {
            return Err(Error::bad_archive(
                path,
                format!("the dump ends inside its header ({what} line)"),
            ));
        }
        Ok(buf)
    };
    let first = line("first")?;
    if !first.starts_with(HEADER_PREFIX.as_bytes()) {
        return Err(Error::bad_archive(path, "not a litevault dump"));
    }
    let created = line("created_at")?;
    let manifest_line = line("manifest")?;
    let created = std::str::from_utf8(&created)
        .ok()
        .and_then(|l| l.strip_prefix(CREATED_PREFIX))
        .map(|l| l.trim_end().to_string())
        .ok_or_else(|| Error::bad_archive(path, "line 2 is not the created_at line"))?;
    let json = std::str::from_utf8(&manifest_line)
        .ok()
        .and_then(|l| l.strip_prefix(MANIFEST_PREFIX))
        .ok_or_else(|| Error::bad_archive(path, "line 3 is not the manifest line"))?;
    let mut manifest: Manifest = serde_json::from_str(json)
        .map_err(|e| Error::bad_archive(path, format!("unreadable manifest: {e}")))?;
    manifest.created_at = created;
    manifest
        .validate()
        .map_err(|r| Error::bad_archive(path, format!("invalid manifest: {r}")))?;
    if manifest.kind != "sql" {
        return Err(Error::bad_archive(
            path,
            format!("a dump whose manifest says kind {:?}", manifest.kind),
        ));
    }
    let mut hashed = first;
    hashed.extend_from_slice(&manifest_line);
    Ok(Header { manifest, hashed })
}

/// Parses a trailer line (without its prefix).
pub fn parse_trailer(line: &str) -> Option<Trailer> {
    let t: Trailer = serde_json::from_str(line.trim_end()).ok()?;
    let hexok = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    hexok(&t.sha256).then_some(t)
}
