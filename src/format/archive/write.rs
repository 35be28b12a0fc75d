//! Writing archives: the compressing [`Encoder`], the tar entries both writers append (one
//! tar body: [`write_entry`], [`write_file_entry`]), the streaming [`ArchiveWriter`] and the
//! [`ZstdManifestLastWriter`] whose manifest is written last into its head.

use crate::error::{Error, Result};
use crate::format::files::{FileEntry, FileKind};
use crate::location::{NewObject, Published};
use crate::model::hex;
use crate::progress::Progress;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

use super::common::*;

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
pub(super) fn entry_header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
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
pub(super) fn write_entry(
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
pub(super) fn file_headers(entry: &FileEntry) -> io::Result<Vec<u8>> {
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
pub(super) fn write_file_entry(
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
pub(super) const ZSTD_JOB_SIZE: u32 = 2 << 20;

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
pub(super) fn zstd_workers<W: Write>(
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
pub(super) const ZSTD_SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];

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
pub(super) fn manifest_head(
    manifest_json: &[u8],
    mtime: u64,
    level: i32,
    reserved: u64,
) -> io::Result<Vec<u8>> {
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
