//! `copy`: archives from one location to another (push local backups up to a bucket, or pull one
//! down), each under its own name, through the destination's publish path (never replacing an
//! object), and checked on arrival: the bytes stored are read back and must have the size and
//! SHA-256 of the bytes read from the source.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::location::{self, CreateOptions};
use crate::model::hex;
use crate::ops::Context;
use crate::progress::Progress;

/// One archive copied by [`copy`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopiedArchive {
    /// Where it came from.
    pub source: PathBuf,
    /// Where it is now.
    pub destination: PathBuf,
    /// Bytes copied.
    pub size: u64,
    /// SHA-256 of the archive, the same at both ends (checked by reading the copy back).
    pub sha256: String,
}

/// What [`copy`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyReport {
    /// The destination location.
    pub destination: String,
    /// Each archive copied, in the order given.
    pub copied: Vec<CopiedArchive>,
    /// Milliseconds the copy took.
    pub duration_ms: u64,
}

/// Copies each of `sources` (local paths or `s3://` objects) into the location `dest`.
/// Every name is checked free in the destination before anything is copied (refused with
/// [`Error::WouldOverwrite`] otherwise); a copy that does not read back identical is deleted
/// and reported as corruption.
pub fn copy(ctx: &Context, sources: &[PathBuf], dest: &Path, progress: &dyn Progress) -> Result<CopyReport> {
    ctx.apply_priority();
    let started = std::time::Instant::now();
    let to = location::open_for_writing(dest)?;
    let mut plan = Vec::new();
    for src in sources {
        let (from, name) = location::split_object(src)?;
        let meta = from
            .head(&name)?
            .ok_or_else(|| Error::NotFound { path: src.clone() })?;
        if !location::is_backup_name(&name) {
            return Err(Error::InvalidOption(format!(
                "{} is not a litevault archive or dump name (.tar.zst, .tar.gz, .tar, .sql.zst, .sql.gz, .sql)",
                src.display()
            )));
        }
        if to.head(&name)?.is_some() {
            return Err(Error::WouldOverwrite {
                path: to.object_path(&name),
            });
        }
        if plan.iter().any(|(_, n, _, _): &(_, String, _, _)| *n == name) {
            return Err(Error::InvalidOption(format!("{name} is given twice")));
        }
        plan.push((from, name, meta.size, src.clone()));
    }
    let mut copied = Vec::new();
    for (from, name, size, src) in plan {
        let mut reader = from.read_stream(&name)?;
        let mut obj = to.create(
            &name,
            &CreateOptions {
                mode: 0o600,
                ..Default::default()
            },
        )?;
        let dest_path = to.object_path(&name);
        progress.begin(&format!("copy {name}"), Some(size));
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(
                        location::download_error(&src, &e).unwrap_or_else(|| Error::io("read", &src, e))
                    )
                }
            };
            hasher.update(&buf[..n]);
            obj.write_all(&buf[..n])
                .map_err(|e| Error::io("write", &dest_path, e))?;
            total += n as u64;
            crate::progress::step(progress, n as u64)?;
        }
        progress.end();
        let read_sum = hex(&hasher.finalize());
        if total != size {
            return Err(Error::bad_archive(
                &src,
                format!("read {total} bytes of an object listed as {size}"),
            ));
        }
        let published = obj.finish(None)?;
        // Checked on arrival: what the destination stores, read back.
        let mut back = to.read_stream(&published.name)?;
        let mut hasher = Sha256::new();
        let mut stored = 0u64;
        loop {
            let n = back.read(&mut buf).map_err(|e| {
                location::download_error(&published.path, &e)
                    .unwrap_or_else(|| Error::io("read back", &published.path, e))
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            stored += n as u64;
        }
        let stored_sum = hex(&hasher.finalize());
        if stored != total || stored_sum != read_sum || published.sha256 != read_sum {
            let _ = to.delete(&published.name);
            return Err(Error::ChecksumMismatch {
                path: published.path,
                entry: "the copied archive (deleted)".into(),
                expected: read_sum,
                actual: stored_sum,
            });
        }
        copied.push(CopiedArchive {
            source: src,
            destination: published.path,
            size: total,
            sha256: read_sum,
        });
    }
    Ok(CopyReport {
        destination: to.url(),
        copied,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
