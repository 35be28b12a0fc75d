//! Reading archives as untrusted input: opening and decoding ([`open_reader`]), the manifest at
//! the head ([`read_manifest`]), and the one streaming pass over every entry ([`read_archive`]):
//! names, order and sizes checked, every entry hashed, the database written through a
//! caller's writer and the files through a [`FileSink`].

use crate::error::{Error, Result};
use crate::format::crypt::Identities;
use crate::format::files::{FileEntry, FileKind};
use crate::format::manifest::Manifest;
use crate::model::hex;
use crate::progress::Progress;
use crate::sqlite::db::Check;
use sha2::{Digest, Sha256};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use super::common::*;

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

/// Parses `SHA256SUMS` text; entries must be known names (or files for which `is_file` says
/// yes), each at most once.
pub(super) fn parse_sums(
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
pub(super) fn decoder(
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

pub(super) fn bad_read(path: &Path, e: io::Error) -> Error {
    if let Some(remote) = crate::location::download_error(path, &e) {
        return remote;
    }
    Error::bad_archive(path, format!("cannot read archive (truncated or damaged?): {e}"))
}

pub(super) fn expect_entry<R: Read>(
    path: &Path,
    entry: &tar::Entry<'_, R>,
    name: &str,
    max: u64,
) -> Result<u64> {
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

pub(super) fn read_small<R: Read>(path: &Path, entry: tar::Entry<'_, R>, size: u64) -> Result<Vec<u8>> {
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

pub(super) fn read_manifest_entry<R: Read>(
    path: &Path,
    entry: tar::Entry<'_, R>,
) -> Result<(Manifest, String)> {
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
    /// SHA-256 of the archive's bytes as read (the whole file once it was read to its end), when
    /// asked for.
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
    read_archive_as(path, db_out, false, false, &mut DiscardFiles, progress, ids)
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
    read_archive_as(path, db_out, false, false, files, progress, ids)
}

/// [`read_archive`]; with `link`, an incremental archive's `pages.bin` is accepted (its
/// records go to `db_out`, for [`crate::ops::chain::compose`]); without it an incremental archive
/// is refused, since its data entry is not a database. With `hash_archive`, the SHA-256 of the
/// archive's own bytes is computed ([`ArchiveContents::archive_sha256`]: a chain's child names
/// its parent by it); otherwise that second hash over every compressed byte is spared.
pub(crate) fn read_archive_as(
    path: &Path,
    db_out: &mut (dyn Write + Send),
    link: bool,
    hash_archive: bool,
    files: &mut dyn FileSink,
    progress: &dyn Progress,
    ids: &Identities,
) -> Result<ArchiveContents> {
    let raw = crate::location::open_read(path, false)?;
    let raw_hash = std::sync::Arc::new(std::sync::Mutex::new((hash_archive.then(Sha256::new), 0u64)));
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
            (h.map(|h| hex(&h.finalize())), n)
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
pub(super) struct RawHashReader {
    inner: Box<dyn Read + Send>,
    hash: std::sync::Arc<std::sync::Mutex<(Option<Sha256>, u64)>>,
}

impl Read for RawHashReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut h) = self.hash.lock() {
            if let Some(sha) = &mut h.0 {
                sha.update(&buf[..n]);
            }
            h.1 += n as u64;
        }
        Ok(n)
    }
}

pub(super) type Entries = (
    Manifest,
    String,
    (&'static str, String),
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
);

/// A reader of one file entry's content that hashes it and keeps its read error (so that a
/// sink's failure can be told from damage in the archive).
pub(super) struct FileContent<R> {
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
pub(super) fn check_file_entry(
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
pub(super) fn copy_data_entry(
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
                crate::progress::step_io(progress, n as u64)?;
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

pub(super) fn read_entries(
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
