//! The archive container: a tar stream, optionally compressed, holding `manifest.json`,
//! `database.sqlite` and `SHA256SUMS`, in that order.
//!
//! [`ArchiveWriter`] streams entries through tar, the compressor and a hasher of the compressed
//! bytes, so memory stays flat whatever the database size. [`ZstdManifestLastWriter`] does the
//! same for zstd archives whose manifest is only known after the database was streamed: the
//! manifest goes into space reserved at the head of the file (a zstd frame, then a skippable
//! frame). [`read_manifest`] reads only an archive's head. [`read_archive`] streams a whole
//! archive once, hashing every entry and passing the database bytes to a caller's writer
//! (decompression, hashing and writing on three threads).
//!
//! Archives are untrusted input: the reader accepts only regular-file entries with the three
//! expected names in the expected order (no links, devices, paths or long-name extensions),
//! caps every entry at a size it knows in advance (the database at the size the manifest
//! records), and never unpacks anything by name. A decompression bomb therefore costs at most
//! the declared database size.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::crypt::Identities;
use crate::format::files::{FileEntry, FileKind};
use crate::format::manifest::Manifest;
use crate::location::{NewObject, Published};
use crate::model::hex;
use crate::progress::Progress;
use crate::sqlite::db::Check;

/// Name of the manifest entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Name of the database entry.
pub const DATABASE_ENTRY: &str = "database.sqlite";
/// Name of the checksum entry (`sha256sum -c` format).
pub const SUMS_ENTRY: &str = "SHA256SUMS";

pub(crate) const MAX_MANIFEST: u64 = 16 << 20;
// Buffers of the database on their way from the decompressing thread to the writing one.
const PIPE_BUFFER_SIZE: usize = 1 << 20;
const PIPE_BUFFERS: usize = 4;
const MAX_SUMS: u64 = 64 << 10;
// tar end-of-archive blocks and record padding after the last entry.
const MAX_TRAILER: u64 = 1 << 20;

pub use crate::model::compression::Compression;

impl Compression {
    /// Checks a level against what the codec accepts.
    pub fn check_level(self, level: i32) -> Result<()> {
        let ok = match self {
            Compression::Zstd => (1..=22).contains(&level),
            Compression::Gzip => (0..=9).contains(&level),
            Compression::None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidOption(match self {
                Compression::Zstd => format!("zstd level {level} is outside 1..=22"),
                Compression::Gzip => format!("gzip level {level} is outside 0..=9"),
                Compression::None => "--level needs a compression (zstd or gzip)".into(),
            }))
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            _ => Err(Error::InvalidOption(format!(
                "unknown compression {s:?} (zstd, gzip, none)"
            ))),
        }
    }
}

pub use crate::model::naming::is_archive_name;

/// A writer that hashes and counts what passes through it (also used for SQL dumps).
pub(crate) struct HashWriter<W> {
    pub(crate) inner: W,
    pub(crate) hasher: Sha256,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it and reports progress.
struct HashReader<'a, R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// A compressing writer for one of the codecs (also used for SQL dumps).
pub(crate) enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    Plain(W),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(out: W, codec: &Codec) -> io::Result<Self> {
        let level = codec.level.or(codec.compression.default_level());
        Ok(match codec.compression {
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, level.unwrap_or(3))?;
                zstd_workers(&mut enc, codec.threads)?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.unwrap_or(6) as u32),
            )),
            Compression::None => Encoder::Plain(out),
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Plain(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Plain(w) => w.flush(),
        }
    }
}

/// The tar header of an entry: GNU format, regular file, mode 0644, `mtime`, no owner.
fn entry_header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path(name)?;
    h.set_cksum();
    Ok(h)
}

/// Writes one tar entry of exactly `size` bytes that `fill` produces into `out`, padded to the
/// next 512-byte block; returns the SHA-256 of the content.
fn write_entry(
    out: &mut dyn Write,
    header: &tar::Header,
    size: u64,
    io_err: &dyn Fn(io::Error) -> Error,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<String> {
    out.write_all(header.as_bytes()).map_err(io_err)?;
    let mut hw = HashWriter {
        inner: &mut *out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    fill(&mut hw)?;
    if hw.bytes != size {
        return Err(io_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("entry of {size} bytes got {}", hw.bytes),
        )));
    }
    let sum = hex(&hw.hasher.finalize());
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize]).map_err(io_err)?;
    Ok(sum)
}

/// The tar header(s) of a file entry: GNU long-name and long-link records first when its
/// name or target is over 100 bytes, then its own header (its mode and mtime, no owner).
fn file_headers(entry: &FileEntry) -> io::Result<Vec<u8>> {
    fn long_record(out: &mut Vec<u8>, kind: tar::EntryType, value: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_size(value.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(value);
        out.push(0);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    let name = entry.entry_name();
    let mut out = Vec::with_capacity(512);
    let mut h = tar::Header::new_gnu();
    if name.len() > 100 {
        long_record(&mut out, tar::EntryType::GNULongName, name.as_bytes());
    }
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name.as_bytes()[..n]);
    h.set_mode(entry.mode & 0o777);
    h.set_mtime(entry.mtime.max(0) as u64);
    match entry.kind {
        FileKind::File => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(entry.size);
        }
        FileKind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        }
        FileKind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = entry.target.as_deref().unwrap_or_default().as_bytes();
            if target.len() > 100 {
                long_record(&mut out, tar::EntryType::GNULongLink, target);
            }
            let n = target.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&target[..n]);
        }
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    Ok(out)
}

/// Writes a file entry (see [`file_headers`]) whose content `fill` writes (regular files);
/// returns the SHA-256 of a regular file's content, which must be the entry's.
fn write_file_entry(
    out: &mut dyn Write,
    entry: &FileEntry,
    io_err: &dyn Fn(io::Error) -> Error,
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> Result<Option<String>> {
    out.write_all(&file_headers(entry).map_err(io_err)?)
        .map_err(io_err)?;
    if entry.kind != FileKind::File {
        return Ok(None);
    }
    let mut hw = HashWriter {
        inner: &mut *out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    fill(&mut hw).map_err(io_err)?;
    let sum = hex(&hw.hasher.finalize());
    if hw.bytes != entry.size || Some(&sum) != entry.sha256.as_ref() {
        return Err(io_err(io::Error::other(format!(
            "{}: the spooled copy ({} bytes) does not match what was recorded",
            entry.path, hw.bytes
        ))));
    }
    let pad = (512 - entry.size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize]).map_err(io_err)?;
    Ok(Some(sum))
}

/// Receives an archive's file entries as they are read (see [`read_archive_with`]).
pub trait FileSink {
    /// Takes one entry; `content` yields a regular file's bytes (at most the size the manifest
    /// records; nothing for directories and symlinks). The reader checks sizes and checksums:
    /// a sink must not put anything under a final name before those checks are done.
    fn entry(&mut self, entry: &FileEntry, content: &mut dyn Read) -> Result<()>;
}

/// A [`FileSink`] that only reads (the reader hashes what it reads).
pub struct DiscardFiles;

impl FileSink for DiscardFiles {
    fn entry(&mut self, _: &FileEntry, content: &mut dyn Read) -> Result<()> {
        let _ = io::copy(content, &mut io::sink());
        Ok(())
    }
}

impl FileSink for crate::format::files::Stager {
    fn entry(&mut self, entry: &FileEntry, content: &mut dyn Read) -> Result<()> {
        self.stage(entry, content)
    }
}

/// What [`ArchiveWriter::finish`] returns.
#[derive(Debug)]
pub struct WrittenArchive<W> {
    /// The underlying writer, flushed.
    pub inner: W,
    /// SHA-256 of the archive bytes as written (compressed).
    pub sha256: String,
    /// Bytes written.
    pub size: u64,
    /// SHA-256 of each entry's content, by entry name.
    pub entries: Vec<(String, String)>,
}

/// Streams entries into a (compressed) tar archive and appends `SHA256SUMS` on finish.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Encoder<HashWriter<W>>>,
    sums: Vec<(String, String)>,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive on `out`. `mtime` (seconds since the epoch) stamps every entry, so
    /// the same content gives the same tar bytes.
    pub fn new(out: W, codec: &Codec, mtime: u64) -> io::Result<Self> {
        let hashed = HashWriter {
            inner: out,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let mut tar = tar::Builder::new(Encoder::new(hashed, codec)?);
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter {
            tar,
            sums: Vec::new(),
            mtime,
        })
    }

    fn header(&self, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    /// Appends an entry held in memory.
    pub fn append_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut h = self.header(data.len() as u64);
        self.tar.append_data(&mut h, name, data)?;
        self.sums.push((name.to_string(), hex(&Sha256::digest(data))));
        Ok(())
    }

    /// Streams an entry of exactly `size` bytes from `reader`; returns its SHA-256.
    pub fn append_stream(
        &mut self,
        name: &str,
        size: u64,
        reader: impl Read,
        progress: &dyn Progress,
    ) -> io::Result<String> {
        let mut h = self.header(size);
        let mut hr = HashReader {
            inner: reader.take(size),
            hasher: Sha256::new(),
            bytes: 0,
            progress,
        };
        self.tar.append_data(&mut h, name, &mut hr)?;
        if hr.bytes != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, read {}", hr.bytes),
            ));
        }
        let sum = hex(&hr.hasher.finalize());
        self.sums.push((name.to_string(), sum.clone()));
        Ok(sum)
    }

    /// Appends an entry of exactly `size` bytes that `fill` writes into the writer it is given
    /// (in as many writes as it likes), hashing them on the way; returns the entry's SHA-256.
    /// `io_err` turns a failure to write the archive into an [`Error`]; errors of `fill` pass
    /// through unchanged.
    pub fn append_with(
        &mut self,
        name: &str,
        size: u64,
        io_err: &dyn Fn(io::Error) -> Error,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<String> {
        let h = entry_header(name, size, self.mtime).map_err(io_err)?;
        let sum = write_entry(self.tar.get_mut(), &h, size, io_err, fill)?;
        self.sums.push((name.to_string(), sum.clone()));
        Ok(sum)
    }

    /// Appends a file entry whose content (a regular file's) `fill` writes; it is listed in
    /// `SHA256SUMS`.
    pub fn append_file(
        &mut self,
        entry: &FileEntry,
        io_err: &dyn Fn(io::Error) -> Error,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        if let Some(sum) = write_file_entry(self.tar.get_mut(), entry, io_err, fill)? {
            self.sums.push((entry.entry_name(), sum));
        }
        Ok(())
    }

    /// Appends `SHA256SUMS`, ends the tar stream and the compressed stream, flushes.
    pub fn finish(mut self) -> io::Result<WrittenArchive<W>> {
        let sums_text = format_sums(&self.sums);
        let mut h = self.header(sums_text.len() as u64);
        self.tar.append_data(&mut h, SUMS_ENTRY, sums_text.as_bytes())?;
        let entries = std::mem::take(&mut self.sums);
        let encoder = self.tar.into_inner()?;
        let mut hashed = encoder.finish()?;
        hashed.flush()?;
        Ok(WrittenArchive {
            sha256: hex(&hashed.hasher.finalize()),
            size: hashed.bytes,
            inner: hashed.inner,
            entries,
        })
    }
}

/// Input bytes of each zstd worker's job. zstd's default at level 3 (8 MiB jobs, several in
/// flight per worker) made up most of a backup's memory; 2 MiB jobs cut a 300 MiB backup's peak
/// RSS from 72 to 33 MiB at the same speed, for archives 0.3% larger (still smaller than
/// `zstd -3 -T0`'s, measured 2026-12-01).
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// How a writer compresses: the codec, its level, and zstd's worker threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    /// The codec.
    pub compression: Compression,
    /// Its level (the codec's default when `None`).
    pub level: Option<i32>,
    /// zstd worker threads: 0 is one per core (none on a single core), 1 is one worker beside
    /// the thread that feeds it. Ignored by the other codecs.
    pub threads: u32,
}

/// Turns on zstd's worker threads for `enc` as `threads` says ([`Codec::threads`]), with
/// [`ZSTD_JOB_SIZE`] jobs.
fn zstd_workers<W: Write>(
    enc: &mut zstd::stream::write::Encoder<'static, W>,
    threads: u32,
) -> io::Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as u32;
    let threads = match threads {
        0 if cores > 1 => cores,
        0 => return Ok(()),
        n => n,
    };
    enc.multithread(threads)?;
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    Ok(())
}

/// First bytes of a zstd skippable frame (magic 0x184D2A50, little-endian); decoders,
/// `zstd -d` included, skip its content.
const ZSTD_SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];

/// Bytes to reserve at the head of a [`ZstdManifestLastWriter`] archive for a manifest of at
/// most `manifest_len` bytes.
pub fn manifest_reserve(manifest_len: usize) -> u64 {
    let tar_len = 512 + manifest_len.div_ceil(512) * 512;
    // The compressed frame is at most compress_bound of its input, plus frame header and
    // checksum slack; then the 8-byte header of the skippable frame that fills the rest.
    (zstd::zstd_safe::compress_bound(tar_len) + 64 + 8) as u64
}

/// A zstd archive whose manifest is decided last but still stored first, so that the
/// database can be streamed while the checks that the manifest records are still running.
///
/// The file is: a zstd frame with the `manifest.json` entry, a zstd skippable frame filling
/// the space reserved for it ([`manifest_reserve`]), then the zstd frame(s) of the
/// `database.sqlite` and `SHA256SUMS` entries and the end of the tar stream. zstd decoders
/// (the `zstd` tool, `tar --zstd`, litevault's reader) read the frames as one stream and
/// ignore the skippable one, so the archive reads exactly like one from [`ArchiveWriter`].
pub struct ZstdManifestLastWriter {
    enc: Option<zstd::stream::write::Encoder<'static, Counted>>,
    reserved: u64,
    level: i32,
    threads: u32,
    mtime: u64,
    sums: Vec<(String, String)>,
}

/// A new object that counts the bytes written to it (for the byte ranges of frames).
pub struct Counted {
    inner: Box<dyn NewObject>,
    written: u64,
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ZstdManifestLastWriter {
    /// Starts an archive in `out` (a new object created with `head_reserve` = `reserved`),
    /// leaving `reserved` bytes at its head for the manifest.
    /// `codec.compression` is zstd whatever it says.
    pub fn new(out: Box<dyn NewObject>, codec: &Codec, mtime: u64, reserved: u64) -> io::Result<Self> {
        let level = codec.level.unwrap_or(3);
        let threads = codec.threads;
        let mut out = Counted {
            inner: out,
            written: 0,
        };
        io::copy(&mut io::repeat(0).take(reserved), &mut out)?;
        let enc = Self::frame(out, level, threads)?;
        Ok(ZstdManifestLastWriter {
            enc: Some(enc),
            reserved,
            level,
            threads,
            mtime,
            sums: Vec::new(),
        })
    }

    fn frame(
        out: Counted,
        level: i32,
        threads: u32,
    ) -> io::Result<zstd::stream::write::Encoder<'static, Counted>> {
        let mut enc = zstd::stream::write::Encoder::new(out, level)?;
        zstd_workers(&mut enc, threads)?;
        enc.include_checksum(true)?;
        Ok(enc)
    }

    fn enc(&mut self) -> io::Result<&mut zstd::stream::write::Encoder<'static, Counted>> {
        self.enc
            .as_mut()
            .ok_or_else(|| io::Error::other("archive writer used after a failure"))
    }

    /// Streams the database entry, as [`ArchiveWriter::append_with`] does.
    pub fn append_database(
        &mut self,
        size: u64,
        io_err: &dyn Fn(io::Error) -> Error,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<String> {
        self.append_entry(DATABASE_ENTRY, size, io_err, fill)
    }

    /// Streams an entry of exactly `size` bytes that `fill` writes; returns its SHA-256.
    pub fn append_entry(
        &mut self,
        name: &str,
        size: u64,
        io_err: &dyn Fn(io::Error) -> Error,
        fill: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<String> {
        let h = entry_header(name, size, self.mtime).map_err(io_err)?;
        let enc = self.enc().map_err(io_err)?;
        let sum = write_entry(enc, &h, size, io_err, fill)?;
        self.sums.push((name.to_string(), sum.clone()));
        Ok(sum)
    }

    /// Appends a file entry, as [`ArchiveWriter::append_file`] does.
    pub fn append_file(
        &mut self,
        entry: &FileEntry,
        io_err: &dyn Fn(io::Error) -> Error,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> Result<()> {
        let enc = self.enc().map_err(io_err)?;
        if let Some(sum) = write_file_entry(enc, entry, io_err, fill)? {
            self.sums.push((entry.entry_name(), sum));
        }
        Ok(())
    }

    /// Appends an entry held in memory in a zstd frame of its own, and returns the byte range
    /// of that frame in the archive (it can be read alone, with one range read).
    pub fn append_framed(&mut self, name: &str, data: &[u8]) -> io::Result<(u64, u64)> {
        let out = self
            .enc
            .take()
            .ok_or_else(|| io::Error::other("archive writer used after a failure"))?
            .finish()?;
        let start = out.written;
        let mut enc = zstd::stream::write::Encoder::new(out, 1)?;
        enc.include_checksum(true)?;
        let h = entry_header(name, data.len() as u64, self.mtime)?;
        enc.write_all(h.as_bytes())?;
        enc.write_all(data)?;
        enc.write_all(&[0u8; 512][..(512 - data.len() % 512) % 512])?;
        let out = enc.finish()?;
        let range = (start, out.written - start);
        self.enc = Some(Self::frame(out, self.level, self.threads)?);
        self.sums.push((name.to_string(), hex(&Sha256::digest(data))));
        Ok(range)
    }

    /// Ends the frame being written and starts the last one (for `SHA256SUMS`); returns the
    /// archive's size up to there, which the manifest records as its `body_size`.
    pub fn end_body(&mut self) -> io::Result<u64> {
        let out = self
            .enc
            .take()
            .ok_or_else(|| io::Error::other("archive writer used after a failure"))?
            .finish()?;
        let size = out.written;
        self.enc = Some(Self::frame(out, self.level, self.threads)?);
        Ok(size)
    }

    /// Appends `SHA256SUMS`, ends the stream, has the manifest frame written into the reserved
    /// head and publishes the object ([`NewObject::finish`]).
    pub fn finish(
        mut self,
        manifest_json: &[u8],
        io_err: &dyn Fn(io::Error) -> Error,
    ) -> Result<(Published, Vec<(String, String)>)> {
        let mut entries = vec![(MANIFEST_ENTRY.to_string(), hex(&Sha256::digest(manifest_json)))];
        entries.extend(std::mem::take(&mut self.sums));
        let mtime = self.mtime;
        let head = (|| -> io::Result<Vec<u8>> {
            let sums_text = format_sums(&entries);
            let h = entry_header(SUMS_ENTRY, sums_text.len() as u64, mtime)?;
            let enc = self.enc()?;
            enc.write_all(h.as_bytes())?;
            enc.write_all(sums_text.as_bytes())?;
            let pad = (512 - sums_text.len() % 512) % 512;
            enc.write_all(&[0u8; 512][..pad])?;
            // End of the tar stream: two zero blocks.
            enc.write_all(&[0u8; 1024])?;
            manifest_head(manifest_json, mtime, self.level, self.reserved)
        })()
        .map_err(io_err)?;
        let enc = self
            .enc
            .take()
            .ok_or_else(|| io_err(io::Error::other("archive writer used after a failure")))?;
        let out = enc.finish().map_err(io_err)?;
        let published = out.inner.finish(Some(&head))?;
        Ok((published, entries))
    }
}

/// The bytes that fill the reserved head: the zstd frame of the `manifest.json` entry, then a
/// skippable frame over the rest of the reserve.
fn manifest_head(manifest_json: &[u8], mtime: u64, level: i32, reserved: u64) -> io::Result<Vec<u8>> {
    let mut tar_head = Vec::with_capacity(512 + manifest_json.len() + 512);
    let mh = entry_header(MANIFEST_ENTRY, manifest_json.len() as u64, mtime)?;
    tar_head.extend_from_slice(mh.as_bytes());
    tar_head.extend_from_slice(manifest_json);
    tar_head.resize(tar_head.len() + (512 - manifest_json.len() % 512) % 512, 0);
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), level)?;
    enc.include_checksum(true)?;
    enc.write_all(&tar_head)?;
    let mut head = enc.finish()?;
    let skip = reserved
        .checked_sub(head.len() as u64 + 8)
        .filter(|&n| n <= u32::MAX as u64)
        .ok_or_else(|| {
            io::Error::other(format!(
                "the manifest frame ({} bytes) does not fit the {} bytes reserved for it",
                head.len(),
                reserved
            ))
        })?;
    head.extend_from_slice(&ZSTD_SKIPPABLE_MAGIC);
    head.extend_from_slice(&(skip as u32).to_le_bytes());
    Ok(head)
}

/// `SHA256SUMS` text: one `<hex>  <name>` line per entry, as `sha256sum` prints.
pub fn format_sums(sums: &[(String, String)]) -> String {
    sums.iter()
        .map(|(name, sum)| format!("{sum}  {name}\n"))
        .collect()
}

/// Parses `SHA256SUMS` text; entries must be known names (or files for which `is_file` says
/// yes), each at most once.
fn parse_sums(
    text: &str,
    is_file: &dyn Fn(&str) -> bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| format!("malformed line {line:?}"))?;
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("malformed checksum in line {line:?}"));
        }
        if ![
            MANIFEST_ENTRY,
            DATABASE_ENTRY,
            crate::sqlite::pageset::PAGES_ENTRY,
            crate::sqlite::pageset::HASHES_ENTRY,
        ]
        .contains(&name)
            && !is_file(name)
        {
            return Err(format!("unexpected name {name:?}"));
        }
        if !seen.insert(name) {
            return Err(format!("{name} listed twice"));
        }
        out.push((name.to_string(), sum.to_ascii_lowercase()));
    }
    Ok(out)
}

/// Opens an archive file and returns its decompressing reader, detecting the codec from the
/// first bytes (not the file name).
pub fn open_reader(path: &Path, ids: &Identities) -> Result<(Compression, Box<dyn Read>)> {
    open_reader_with(path, false, ids)
}

/// [`open_reader`] for a reader that goes only as far as `head_only` says: a remote archive is
/// then fetched in range reads as far as the reader goes (see [`crate::location::open_read`]).
pub fn open_reader_with(
    path: &Path,
    head_only: bool,
    ids: &Identities,
) -> Result<(Compression, Box<dyn Read>)> {
    decoder(path, crate::location::open_read(path, head_only)?, ids)
}

/// The decompressing reader of an archive's bytes, the codec detected from its first bytes.
fn decoder(
    path: &Path,
    file: Box<dyn Read + Send>,
    ids: &Identities,
) -> Result<(Compression, Box<dyn Read>)> {
    let (_, file) = crate::format::crypt::plaintext(path, file, ids)?;
    let mut buf = BufReader::with_capacity(1 << 20, file);
    let head = buf
        .fill_buf()
        .map_err(|e| crate::format::crypt::read_error(path, e))?;
    let kind = sniff(head);
    let reader: Box<dyn Read> = match kind {
        Some(Compression::Zstd) => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| Error::io("start zstd decoder for", path, e))?;
            // Refuse frames that ask for more than 128 MiB of window (memory stays bounded).
            d.window_log_max(27)
                .map_err(|e| Error::io("configure zstd decoder for", path, e))?;
            Box::new(d)
        }
        Some(Compression::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Some(Compression::None) => Box::new(buf),
        None => {
            return Err(Error::bad_archive(
                path,
                "not a litevault archive (neither zstd, gzip nor tar)",
            ))
        }
    };
    Ok((kind.unwrap_or_default(), reader))
}

/// Detects the codec of an archive from its first bytes.
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::None)
    } else {
        None
    }
}

/// Reads only the manifest at the head of an archive.
pub fn read_manifest(path: &Path, ids: &Identities) -> Result<Manifest> {
    read_manifest_and_sha256(path, ids).map(|(m, _)| m)
}

/// [`read_manifest`], with the SHA-256 of `manifest.json` as stored.
pub fn read_manifest_and_sha256(path: &Path, ids: &Identities) -> Result<(Manifest, String)> {
    let (_, reader) = open_reader_with(path, true, ids)?;
    let mut tar = tar::Archive::new(reader);
    let mut entries = tar.entries().map_err(|e| bad_read(path, e))?.raw(true);
    let entry = entries
        .next()
        .ok_or_else(|| Error::bad_archive(path, "archive is empty"))?
        .map_err(|e| bad_read(path, e))?;
    read_manifest_entry(path, entry)
}

fn bad_read(path: &Path, e: io::Error) -> Error {
    if let Some(remote) = crate::location::download_error(path, &e) {
        return remote;
    }
    Error::bad_archive(path, format!("cannot read archive (truncated or damaged?): {e}"))
}

fn expect_entry<R: Read>(path: &Path, entry: &tar::Entry<'_, R>, name: &str, max: u64) -> Result<u64> {
    let kind = entry.header().entry_type();
    let raw_name = entry.path_bytes();
    if raw_name.as_ref() != name.as_bytes() {
        return Err(Error::bad_archive(
            path,
            format!(
                "expected entry {name:?}, found {:?}",
                String::from_utf8_lossy(raw_name.as_ref())
            ),
        ));
    }
    if kind != tar::EntryType::Regular {
        return Err(Error::bad_archive(
            path,
            format!("entry {name} is not a regular file ({kind:?})"),
        ));
    }
    let size = entry.header().size().map_err(|e| bad_read(path, e))?;
    if size > max {
        return Err(Error::bad_archive(
            path,
            format!("entry {name} is {size} bytes, more than the {max} allowed"),
        ));
    }
    Ok(size)
}

fn read_small<R: Read>(path: &Path, entry: tar::Entry<'_, R>, size: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| bad_read(path, e))?;
    if data.len() as u64 != size {
        return Err(Error::bad_archive(path, "archive is truncated"));
    }
    Ok(data)
}

fn read_manifest_entry<R: Read>(path: &Path, entry: tar::Entry<'_, R>) -> Result<(Manifest, String)> {
    let size = expect_entry(path, &entry, MANIFEST_ENTRY, MAX_MANIFEST)?;
    let data = read_small(path, entry, size)?;
    let manifest: Manifest = serde_json::from_slice(&data)
        .map_err(|e| Error::bad_archive(path, format!("manifest.json is not a valid manifest: {e}")))?;
    manifest
        .validate()
        .map_err(|r| Error::bad_archive(path, format!("manifest.json: {r}")))?;
    Ok((manifest, hex(&Sha256::digest(&data))))
}

/// What [`read_archive`] found: the manifest, the checksums computed while reading and those
/// the archive records.
#[derive(Debug, Clone)]
pub struct ArchiveContents {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Codec detected.
    pub compression: Compression,
    /// SHA-256 computed of each entry read, by name.
    pub computed: Vec<(String, String)>,
    /// SHA-256 recorded in `SHA256SUMS`, by name.
    pub recorded: Vec<(String, String)>,
    /// SHA-256 computed of each regular file entry read (`files/...`), by name.
    pub files: Vec<(String, String)>,
    /// SHA-256 of the archive's bytes as read (the whole file once it was read to its end).
    pub archive_sha256: Option<String>,
    /// Bytes of the archive read.
    pub archive_bytes: u64,
}

impl ArchiveContents {
    /// One check per entry: does the content read match the recorded checksum?
    pub fn checksum_checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        for (name, actual) in &self.computed {
            let check_name = format!("checksum {name}");
            match self.recorded.iter().find(|(n, _)| n == name) {
                Some((_, expected)) if expected == actual => {
                    checks.push(Check::pass(check_name, actual.clone()))
                }
                Some((_, expected)) => checks.push(Check::fail(
                    check_name,
                    format!("expected {expected}, found {actual}"),
                )),
                None => checks.push(Check::fail(check_name, "not listed in SHA256SUMS")),
            }
        }
        if !self.manifest.files.is_empty() {
            let (count, bytes) = crate::format::files::totals(&self.manifest.files);
            checks.push(match self.file_mismatch() {
                None => Check::pass(
                    "checksum files",
                    format!(
                        "{count} entries, {} regular files ({bytes} bytes) match the manifest and SHA256SUMS",
                        self.files.len()
                    ),
                ),
                Some((name, expected, actual)) => Check::fail(
                    "checksum files",
                    format!("{name}: expected {expected}, found {actual}"),
                ),
            });
        }
        checks
    }

    /// The first file whose content read differs from what the manifest or `SHA256SUMS`
    /// records: (entry name, expected, found).
    fn file_mismatch(&self) -> Option<(String, String, String)> {
        let by_name: std::collections::HashMap<String, &FileEntry> = self
            .manifest
            .files
            .iter()
            .filter(|f| f.kind == FileKind::File)
            .map(|f| (f.entry_name(), f))
            .collect();
        if by_name.len() != self.files.len() {
            return Some((
                "files".into(),
                format!("{} files", by_name.len()),
                format!("{}", self.files.len()),
            ));
        }
        let recorded: std::collections::HashMap<&str, &str> = self
            .recorded
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        for (name, actual) in &self.files {
            let in_manifest = by_name.get(name).and_then(|f| f.sha256.clone());
            let in_sums = recorded.get(name.as_str()).map(|s| s.to_string());
            for expected in [in_manifest, in_sums] {
                match expected {
                    Some(e) if &e == actual => {}
                    Some(e) => return Some((name.clone(), e, actual.clone())),
                    None => return Some((name.clone(), "(not listed)".into(), actual.clone())),
                }
            }
        }
        None
    }

    /// The first checksum mismatch as an error, if any.
    pub fn ensure_checksums(&self, path: &Path) -> Result<()> {
        for (name, actual) in &self.computed {
            let expected = self
                .recorded
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| "(not listed)".into());
            if &expected != actual {
                return Err(Error::ChecksumMismatch {
                    path: path.to_path_buf(),
                    entry: name.clone(),
                    expected,
                    actual: actual.clone(),
                });
            }
        }
        if let Some((entry, expected, actual)) = self.file_mismatch() {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                entry,
                expected,
                actual,
            });
        }
        Ok(())
    }
}

/// Streams a whole archive once: parses the manifest, copies `database.sqlite` into `db_out`
/// (at most the manifest's `db_size` bytes) while hashing it, reads `SHA256SUMS`, and checks
/// that nothing follows. Structural problems (wrong names or types, truncation, sizes that
/// disagree with the manifest) are errors; checksum comparison is left to the caller through
/// [`ArchiveContents`].
pub fn read_archive(
    path: &Path,
    db_out: &mut (dyn Write + Send),
    progress: &dyn Progress,
    ids: &Identities,
) -> Result<ArchiveContents> {
    read_archive_as(path, db_out, false, &mut DiscardFiles, progress, ids)
}

/// [`read_archive`], passing each file entry (`files/...`, after the data entry) to `files`
/// once its name, type, size and (for a symlink) target were checked against the manifest.
/// Every file's SHA-256 is computed on the way ([`ArchiveContents::files`]); the caller
/// compares them ([`ArchiveContents::ensure_checksums`]) before it uses what `files` got.
pub fn read_archive_with(
    path: &Path,
    db_out: &mut (dyn Write + Send),
    files: &mut dyn FileSink,
    progress: &dyn Progress,
    ids: &Identities,
) -> Result<ArchiveContents> {
    read_archive_as(path, db_out, false, files, progress, ids)
}

/// [`read_archive`]; with `link`, an incremental archive's `pages.bin` is accepted (its
/// records go to `db_out`, for [`crate::ops::chain::compose`]); without it an incremental archive
/// is refused, since its data entry is not a database.
pub(crate) fn read_archive_as(
    path: &Path,
    db_out: &mut (dyn Write + Send),
    link: bool,
    files: &mut dyn FileSink,
    progress: &dyn Progress,
    ids: &Identities,
) -> Result<ArchiveContents> {
    let raw = crate::location::open_read(path, false)?;
    let raw_hash = std::sync::Arc::new(std::sync::Mutex::new((Sha256::new(), 0u64)));
    let (compression, reader) = decoder(
        path,
        Box::new(RawHashReader {
            inner: raw,
            hash: raw_hash.clone(),
        }),
        ids,
    )?;
    let mut tar = tar::Archive::new(reader);
    let (manifest, manifest_sum, (data_name, db_sum), extra_sums, recorded, file_sums) =
        read_entries(path, &mut tar, db_out, link, files, progress)?;
    // Read the compressed stream to its end: only then do zstd and gzip check their frame
    // checksums, so a truncated or damaged tail is caught even though every entry was intact.
    let mut rest = tar.into_inner();
    let trailing =
        io::copy(&mut (&mut rest).take(MAX_TRAILER + 1), &mut io::sink()).map_err(|e| bad_read(path, e))?;
    if trailing > MAX_TRAILER {
        return Err(Error::bad_archive(
            path,
            "unexpected data after the end of the tar stream",
        ));
    }
    drop(rest);
    let (archive_sha256, archive_bytes) = match std::sync::Arc::try_unwrap(raw_hash) {
        Ok(m) => {
            let (h, n) = m.into_inner().unwrap_or_else(|p| p.into_inner());
            (Some(hex(&h.finalize())), n)
        }
        Err(_) => (None, 0),
    };
    let mut computed = vec![(MANIFEST_ENTRY.into(), manifest_sum), (data_name.into(), db_sum)];
    computed.extend(extra_sums);
    Ok(ArchiveContents {
        manifest,
        compression,
        computed,
        recorded,
        files: file_sums,
        archive_sha256,
        archive_bytes,
    })
}

/// Hashes the raw (compressed) bytes of an archive as they are read.
struct RawHashReader {
    inner: Box<dyn Read + Send>,
    hash: std::sync::Arc<std::sync::Mutex<(Sha256, u64)>>,
}

impl Read for RawHashReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut h) = self.hash.lock() {
            h.0.update(&buf[..n]);
            h.1 += n as u64;
        }
        Ok(n)
    }
}

type Entries = (
    Manifest,
    String,
    (&'static str, String),
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

/// A reader of one file entry's content that hashes it and keeps its read error (so that a
/// sink's failure can be told from damage in the archive).
struct FileContent<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    error: Option<io::ErrorKind>,
}

impl<R: Read> Read for FileContent<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.kind());
                Err(e)
            }
        }
    }
}

/// Checks that tar entry `e` is the file entry `f` of the manifest (`want` its entry name):
/// its name (or the GNU long name before it), type, size and, for a symlink, target.
fn check_file_entry(
    path: &Path,
    f: &FileEntry,
    want: &str,
    e: &tar::Entry<'_, Box<dyn Read>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
) -> Result<()> {
    let mut name: Vec<u8> = long_name.unwrap_or_else(|| e.path_bytes().into_owned());
    if f.kind == FileKind::Dir && name.len() > 1 && name.ends_with(b"/") {
        name.pop();
    }
    if name != want.as_bytes() {
        return Err(Error::bad_archive(
            path,
            format!(
                "expected entry {want:?}, found {:?} (an entry the manifest does not list, or one out of \
                 place)",
                String::from_utf8_lossy(&name)
            ),
        ));
    }
    let kind = e.header().entry_type();
    let kind_ok = match f.kind {
        FileKind::File => kind == tar::EntryType::Regular,
        FileKind::Dir => kind == tar::EntryType::Directory,
        FileKind::Symlink => kind == tar::EntryType::Symlink,
    };
    if !kind_ok {
        return Err(Error::bad_archive(
            path,
            format!("entry {want} is a {kind:?} entry, the manifest says {:?}", f.kind),
        ));
    }
    let size = e.header().size().map_err(|e| bad_read(path, e))?;
    if size != f.size {
        return Err(Error::bad_archive(
            path,
            format!(
                "entry {want} is {size} bytes but the manifest says {}{}",
                f.size,
                if size > f.size { " (refused: larger)" } else { "" }
            ),
        ));
    }
    if f.kind == FileKind::Symlink {
        let link = long_link.or_else(|| e.header().link_name_bytes().map(|l| l.into_owned()));
        if link.as_deref() != f.target.as_deref().map(str::as_bytes) {
            return Err(Error::bad_archive(
                path,
                format!("symlink {want} does not point where the manifest says"),
            ));
        }
    }
    Ok(())
}

/// Streams the data entry (`size` bytes) into `db_out` and returns its SHA-256. Decompression
/// stays on this thread; hashing and writing run on two others, so the three stages share the
/// cores. A failure to write is an I/O error, not damage in the archive.
fn copy_data_entry(
    path: &Path,
    db_entry: tar::Entry<'_, Box<dyn Read>>,
    size: u64,
    db_out: &mut (dyn Write + Send),
    progress: &dyn Progress,
) -> Result<String> {
    progress.begin("read archive", Some(size));
    // Decompression stays on this thread; hashing and writing run on two others, so the three
    // stages of the work share the cores.
    let (copied, written) = std::thread::scope(|s| {
        let (to_hasher, from_reader) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_BUFFERS);
        let (to_writer, from_hasher) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_BUFFERS);
        let (to_reader, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(2 * PIPE_BUFFERS + 2);
        let hasher = s.spawn(move || {
            let mut hasher = Sha256::new();
            for buf in from_reader {
                hasher.update(&buf);
                if to_writer.send(buf).is_err() {
                    break; // the writer failed; its error says why
                }
            }
            hex(&hasher.finalize())
        });
        let writer = s.spawn(move || -> io::Result<()> {
            for buf in from_hasher {
                db_out.write_all(&buf)?;
                let _ = to_reader.try_send(buf); // a spare buffer for the reader, if it has room
            }
            Ok(())
        });
        let mut entry = db_entry.take(size);
        let copied = (|| -> io::Result<Option<u64>> {
            let mut total = 0u64;
            loop {
                let mut buf = spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(PIPE_BUFFER_SIZE));
                buf.clear();
                let n = (&mut entry).take(PIPE_BUFFER_SIZE as u64).read_to_end(&mut buf)?;
                if n == 0 {
                    return Ok(Some(total));
                }
                total += n as u64;
                progress.advance(n as u64);
                if to_hasher.send(buf).is_err() {
                    return Ok(None); // the writer failed; its error says why
                }
            }
        })();
        drop(to_hasher);
        let sum = hasher.join();
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")))
            .and_then(|()| sum.map_err(|_| io::Error::other("hashing thread panicked")));
        (copied, written)
    });
    progress.end();
    match (copied, written) {
        // A failure to write (disk full, quota, I/O error) is not damage in the archive.
        (_, Err(e)) => Err(Error::io("write the extracted database from", path, e)),
        (Err(e), _) => Err(bad_read(path, e)),
        (Ok(Some(n)), Ok(sum)) if n == size => Ok(sum),
        (Ok(_), Ok(_)) => Err(Error::bad_archive(
            path,
            "archive is truncated inside database.sqlite",
        )),
    }
}

fn read_entries(
    path: &Path,
    tar: &mut tar::Archive<Box<dyn Read>>,
    db_out: &mut (dyn Write + Send),
    link: bool,
    files: &mut dyn FileSink,
    progress: &dyn Progress,
) -> Result<Entries> {
    let mut entries = tar.entries().map_err(|e| bad_read(path, e))?.raw(true);
    let mut next = |what: &str| -> Result<tar::Entry<'_, Box<dyn Read>>> {
        entries
            .next()
            .ok_or_else(|| Error::bad_archive(path, format!("archive ends before {what} (truncated?)")))?
            .map_err(|e| bad_read(path, e))
    };

    let (manifest, manifest_sum) = read_manifest_entry(path, next(MANIFEST_ENTRY)?)?;

    // A full archive holds the database; an incremental one the pages that changed.
    if manifest.kind == "incremental" && !link {
        return Err(Error::bad_archive(
            path,
            "an incremental archive read as a whole database (its chain must be composed)",
        ));
    }
    let (data_name, data_size) = match manifest.kind.as_str() {
        "incremental" => {
            let changed = manifest.changed_pages.unwrap_or(0);
            let record = 4 + manifest.db.page_size as u64;
            (
                crate::sqlite::pageset::PAGES_ENTRY,
                changed.saturating_mul(record),
            )
        }
        _ => (DATABASE_ENTRY, manifest.db_size),
    };
    let db_entry = next(data_name)?;
    let size = expect_entry(path, &db_entry, data_name, data_size)?;
    if size != data_size {
        return Err(Error::bad_archive(
            path,
            format!("{data_name} is {size} bytes but the manifest says {data_size}"),
        ));
    }
    let db_sum = copy_data_entry(path, db_entry, size, db_out, progress)?;

    let mut extra_sums = Vec::new();
    let after_data = if manifest.files.is_empty() {
        SUMS_ENTRY
    } else {
        "the files"
    };
    let mut sums_entry = next(after_data)?;
    if sums_entry.path_bytes().as_ref() == crate::sqlite::pageset::HASHES_ENTRY.as_bytes() {
        let want = manifest
            .page_hashes
            .as_ref()
            .map(|p| p.count.saturating_mul(crate::sqlite::pageset::HASH_LEN as u64))
            .unwrap_or(manifest.db.page_count * crate::sqlite::pageset::HASH_LEN as u64);
        let size = expect_entry(path, &sums_entry, crate::sqlite::pageset::HASHES_ENTRY, want)?;
        // Hashed as it streams: the table's size comes from an untrusted manifest.
        let mut hashed = HashWriter {
            inner: io::sink(),
            hasher: Sha256::new(),
            bytes: 0,
        };
        io::copy(&mut sums_entry.take(size), &mut hashed).map_err(|e| bad_read(path, e))?;
        if hashed.bytes != size {
            return Err(Error::bad_archive(
                path,
                "archive is truncated inside pages.hashes",
            ));
        }
        extra_sums.push((
            crate::sqlite::pageset::HASHES_ENTRY.to_string(),
            hex(&hashed.hasher.finalize()),
        ));
        sums_entry = next(after_data)?;
    }

    // The files, exactly as the manifest lists them, in its order: anything else (an entry it
    // does not list, one twice, one missing, another type or size) is a bad archive.
    let mut file_sums = Vec::new();
    let mut carried = Some(sums_entry);
    for f in &manifest.files {
        let want = f.entry_name();
        let mut e = match carried.take() {
            Some(e) => e,
            None => next(&want)?,
        };
        let (mut long_name, mut long_link) = (None, None);
        loop {
            let t = e.header().entry_type();
            let slot = match t {
                tar::EntryType::GNULongName => &mut long_name,
                tar::EntryType::GNULongLink => &mut long_link,
                _ => break,
            };
            let size = e.header().size().map_err(|e| bad_read(path, e))?;
            if size > crate::format::files::MAX_PATH as u64 + 1 || slot.is_some() {
                return Err(Error::bad_archive(
                    path,
                    format!("a bad long-name record before {want}"),
                ));
            }
            let mut data = read_small(path, e, size)?;
            while data.last() == Some(&0) {
                data.pop();
            }
            *slot = Some(data);
            e = next(&want)?;
        }
        check_file_entry(path, f, &want, &e, long_name, long_link)?;
        let size = f.size;
        let mut content = FileContent {
            inner: e.take(size),
            hasher: Sha256::new(),
            bytes: 0,
            error: None,
        };
        let taken = files.entry(f, &mut content);
        if let Some(kind) = content.error {
            return Err(bad_read(path, io::Error::new(kind, format!("inside {want}"))));
        }
        taken?;
        io::copy(&mut content, &mut io::sink()).map_err(|e| bad_read(path, e))?;
        if content.bytes != size {
            return Err(Error::bad_archive(
                path,
                format!("archive is truncated inside {want}"),
            ));
        }
        if f.kind == FileKind::File {
            file_sums.push((want, hex(&content.hasher.finalize())));
        }
    }
    let sums_entry = match carried.take() {
        Some(e) => e,
        None => next(SUMS_ENTRY)?,
    };
    let file_names: std::collections::HashSet<&str> = file_sums.iter().map(|(n, _)| n.as_str()).collect();
    // Each listed file adds one line to SHA256SUMS.
    let max_sums = file_sums
        .iter()
        .map(|(n, _)| n.len() as u64 + 64 + 4)
        .fold(MAX_SUMS, u64::saturating_add);
    let sums_size = expect_entry(path, &sums_entry, SUMS_ENTRY, max_sums)?;
    let sums_data = read_small(path, sums_entry, sums_size)?;
    let text =
        String::from_utf8(sums_data).map_err(|_| Error::bad_archive(path, "SHA256SUMS is not text"))?;
    let recorded = parse_sums(&text, &|n| file_names.contains(n))
        .map_err(|r| Error::bad_archive(path, format!("SHA256SUMS: {r}")))?;

    if let Some(extra) = entries.next() {
        let extra = extra.map_err(|e| bad_read(path, e))?;
        return Err(Error::bad_archive(
            path,
            format!(
                "unexpected entry {:?} after SHA256SUMS",
                String::from_utf8_lossy(extra.path_bytes().as_ref())
            ),
        ));
    }
    drop(file_names);
    Ok((
        manifest,
        manifest_sum,
        (data_name, db_sum),
        extra_sums,
        recorded,
        file_sums,
    ))
}

/// The default file name of an archive of the database named `name` in its location (see
/// [`crate::location::name_of`]): `<name>[-tag]-<YYYYMMDDTHHMMSSZ><ext>`.
pub fn default_file_name(name: &str, tag: Option<&str>, stamp: &str, compression: Compression) -> String {
    let tag = tag.map(|t| format!("-{t}")).unwrap_or_default();
    format!("{name}{tag}-{stamp}{}", compression.extension())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_round_trip_and_reject_unknown_names() {
        let sums = vec![
            (MANIFEST_ENTRY.to_string(), "a".repeat(64)),
            (DATABASE_ENTRY.to_string(), "b".repeat(64)),
        ];
        let no = |_: &str| false;
        assert_eq!(parse_sums(&format_sums(&sums), &no).unwrap(), sums);
        assert!(parse_sums(&format!("{}  ../etc/passwd\n", "a".repeat(64)), &no).is_err());
        assert!(parse_sums("xyz  manifest.json\n", &no).is_err());
        assert!(parse_sums(
            &format!("{0}  manifest.json\n{0}  manifest.json\n", "a".repeat(64)),
            &no
        )
        .is_err());
        let up = |n: &str| n == "files/up/a b.txt";
        assert!(parse_sums(&format!("{}  files/up/a b.txt\n", "a".repeat(64)), &up).is_ok());
        assert!(parse_sums(&format!("{}  files/up/other\n", "a".repeat(64)), &up).is_err());
    }

    fn new_object(dir: &Path, name: &str, head_reserve: u64) -> Box<dyn NewObject> {
        use crate::location::Location;
        let loc = crate::location::local::LocalDir::new(dir).unwrap();
        let opts = crate::location::CreateOptions {
            head_reserve,
            ..Default::default()
        };
        loc.create(name, &opts).unwrap()
    }

    #[test]
    fn manifest_written_last_is_read_first() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a.tar.zst");
        let db: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let manifest = br#"{"hello": "world"}"#;
        let reserve = manifest_reserve(manifest.len());
        let obj = new_object(d.path(), "a.tar.zst", reserve);
        let mut w = ZstdManifestLastWriter::new(
            obj,
            &Codec {
                level: Some(3),
                ..Codec::default()
            },
            7,
            reserve,
        )
        .unwrap();
        let io_err = |e| Error::io("write", Path::new("a"), e);
        let sum = w
            .append_database(db.len() as u64, &io_err, |out| {
                for chunk in db.chunks(4096) {
                    out.write_all(chunk).map_err(io_err)?;
                }
                Ok(())
            })
            .unwrap();
        let (written, _) = w.finish(manifest, &io_err).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(written.size, bytes.len() as u64);
        assert_eq!(written.sha256, hex(&Sha256::digest(&bytes)));
        assert_eq!(sum, hex(&Sha256::digest(&db)));
        assert_eq!(sniff(&bytes), Some(Compression::Zstd));
        let mut tar = tar::Archive::new(zstd::stream::read::Decoder::new(&bytes[..]).unwrap());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8(entry.path_bytes().to_vec()).unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(entry.header().mtime().unwrap(), 7);
            seen.push((name, data));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [MANIFEST_ENTRY, DATABASE_ENTRY, SUMS_ENTRY]);
        assert_eq!(seen[0].1, manifest);
        assert_eq!(seen[1].1, db);
        let sums = parse_sums(std::str::from_utf8(&seen[2].1).unwrap(), &|_| false).unwrap();
        assert_eq!(sums[0].1, hex(&Sha256::digest(manifest)));
        assert_eq!(sums[1].1, sum);
    }

    #[test]
    fn a_manifest_larger_than_its_reserve_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let obj = new_object(d.path(), "a.tar.zst", manifest_reserve(10));
        let mut w = ZstdManifestLastWriter::new(obj, &Codec::default(), 0, manifest_reserve(10)).unwrap();
        let io_err = |e| Error::io("write", Path::new("a"), e);
        w.append_database(0, &io_err, |_| Ok(())).unwrap();
        // Incompressible text far beyond the 10 bytes the space was reserved for (xorshift
        // letters: ~4.7 bits each, so ~11 KiB compressed against ~1 KiB reserved).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b'a' + (x % 26) as u8
            })
            .collect();
        let r = w.finish(&big, &io_err);
        assert!(r.is_err(), "{r:?}");
        assert!(!d.path().join("a.tar.zst").exists());
    }

    #[test]
    fn sniff_detects_codecs() {
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Compression::Zstd));
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(Compression::None));
        assert_eq!(sniff(b"SQLite format 3\0"), None);
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::Zstd.check_level(19).is_ok());
        assert!(Compression::Zstd.check_level(0).is_err());
        assert!(Compression::Gzip.check_level(10).is_err());
        assert!(Compression::None.check_level(1).is_err());
    }

    #[test]
    fn default_names_carry_stem_tag_and_stamp() {
        let n = default_file_name(
            "my.app",
            Some("pre-restore"),
            "20261121T101500Z",
            Compression::Zstd,
        );
        assert_eq!(n, "my.app-pre-restore-20261121T101500Z.tar.zst");
    }
}
