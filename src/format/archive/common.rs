//! What the archive's reader and writer share: the entry names and size limits, the codec's
//! traits, and the hashing reader and writer.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Name of the manifest entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Name of the database entry.
pub const DATABASE_ENTRY: &str = "database.sqlite";
/// Name of the checksum entry (`sha256sum -c` format).
pub const SUMS_ENTRY: &str = "SHA256SUMS";

pub(crate) const MAX_MANIFEST: u64 = 16 << 20;
// Buffers of the database on their way from the decompressing thread to the writing one.
pub(crate) const PIPE_BUFFER_SIZE: usize = 1 << 20;
pub(crate) const PIPE_BUFFERS: usize = 4;
pub(crate) const MAX_SUMS: u64 = 64 << 10;
// tar end-of-archive blocks and record padding after the last entry.
pub(crate) const MAX_TRAILER: u64 = 1 << 20;

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
pub(crate) struct HashReader<'a, R> {
    pub(crate) inner: R,
    pub(crate) hasher: Sha256,
    pub(crate) bytes: u64,
    pub(crate) progress: &'a dyn Progress,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        crate::progress::step_io(self.progress, n as u64)?;
        Ok(n)
    }
}
