//! Files an application keeps beside its database: `backup --include DIR` and
//! `restore --files-to OUT`.
//!
//! This module owns the manifest's [`FileEntry`] list and its checks (an archive is untrusted:
//! [`check_entries`] refuses any path that could land outside the restore directory), the walk
//! of an included directory ([`walk`]), the spool that gives every file one consistent copy
//! ([`Spool`]), and on restore the plan ([`plan_files`]) and the staging of each file into a
//! hidden temp file in its final directory ([`Stager`]), renamed into place only once the
//! database has passed its checks.
//!
//! What it promises:
//! - symlinks are recorded, never followed: only a relative one whose target stays inside its
//!   included directory (without passing through another symlink) is backed up; an absolute or
//!   escaping one, a fifo, a socket or a device is refused, naming it. Hard links are stored
//!   as regular files;
//! - a file is stored as one state: it is copied into the spool while hashed, its metadata
//!   (size, mtime, ctime, inode) compared before and after; a file that changed is read again
//!   ([`ATTEMPTS`] times in all) or the backup fails naming it. A file that vanishes between the
//!   walk and its copy is left out (the report names it);
//! - memory stays flat: files over [`MEMORY_FILE_MAX`] are spooled into an unnamed temp file
//!   in the backup's work directory, 1 MiB at a time;
//! - a restore never writes through a symlink, never outside its directory, never over an
//!   existing file without `overwrite`, and a failed one leaves neither temp files nor the
//!   directories it created.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::hex;

/// The tar prefix of every file entry: `files/<dir name>/<relative path>`.
pub const FILES_PREFIX: &str = "files/";

/// Longest path (or symlink target) an entry may have, in bytes.
pub const MAX_PATH: usize = 4096;

/// Most entries one archive may list (the manifest's own 16 MiB bound comes first in practice:
/// about 60,000 entries).
pub const MAX_ENTRIES: usize = 1_000_000;

/// How many times a file that changes while it is read is read in all.
pub const ATTEMPTS: u32 = 4;

/// Files up to this size are spooled in memory; larger ones into a temp file.
pub const MEMORY_FILE_MAX: u64 = 1 << 20;

/// Most bytes the spool holds in memory at once (the rest goes to its temp file).
const MEMORY_BUDGET: u64 = 16 << 20;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file (hard links are stored as regular files).
    File,
    /// A directory.
    Dir,
    /// A symbolic link whose relative target stays inside its included directory.
    Symlink,
}

/// One file, directory or symlink of an included directory, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `<dir name>/<relative path>`, `/`-separated (the tar entry is `files/<path>`).
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Bytes of content (0 for directories and symlinks).
    pub size: u64,
    /// Permission bits (setuid, setgid and sticky are not recorded).
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// SHA-256 of the content (regular files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The link's target (symlinks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl FileEntry {
    /// The tar entry's name: `files/<path>`.
    pub fn entry_name(&self) -> String {
        format!("{FILES_PREFIX}{}", self.path)
    }
}

/// Count and content bytes of the regular files among `files`, and the count of all entries.
pub fn totals(files: &[FileEntry]) -> (u64, u64) {
    let regular = files.iter().filter(|f| f.kind == FileKind::File);
    (
        files.len() as u64,
        regular.map(|f| f.size).fold(0, u64::saturating_add),
    )
}

/// Why a relative `/`-separated path cannot be used, if it cannot.
fn check_path(p: &str) -> std::result::Result<(), String> {
    if p.is_empty() || p.len() > MAX_PATH {
        return Err(format!("path of {} bytes", p.len()));
    }
    if p.starts_with('/') {
        return Err(format!("absolute path {p:?}"));
    }
    if p.chars().any(char::is_control) {
        return Err(format!("control character in {p:?}"));
    }
    for c in p.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!("path {p:?} has an empty, `.` or `..` component"));
        }
    }
    Ok(())
}

/// Most components a symlink's target may have.
const MAX_TARGET_COMPONENTS: usize = 256;

/// Why a symlink at `link` (a checked path) pointing to `target` cannot be kept, if it
/// cannot: an absolute target, one that leaves its included directory (the first component of
/// `link`), or one that goes through anything but a directory of the tree (`dirs`: a symlink,
/// whose own target could lead anywhere once restored; a name that is not there, which on a
/// case-insensitive file system could be a symlink spelled otherwise). Resolved lexically, as
/// restore never follows links; linear in the target's length.
pub fn check_symlink(link: &str, target: &str, dirs: &HashSet<&str>) -> std::result::Result<(), String> {
    if target.is_empty() || target.len() > MAX_PATH || target.chars().any(char::is_control) {
        return Err("an empty, overlong or control-character target".into());
    }
    if target.starts_with('/') {
        return Err(format!("its target {target:?} is absolute"));
    }
    let parts: Vec<&str> = target.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if parts.len() > MAX_TARGET_COMPONENTS {
        return Err(format!(
            "its target has more than {MAX_TARGET_COMPONENTS} components"
        ));
    }
    // The link's directory, as a path and the lengths it had before each component.
    let (mut so_far, mut lens) = (String::new(), Vec::new());
    let push = |so_far: &mut String, lens: &mut Vec<usize>, c: &str| {
        lens.push(so_far.len());
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(c);
    };
    let mut components: Vec<&str> = link.split('/').collect();
    components.pop();
    for c in components {
        push(&mut so_far, &mut lens, c);
    }
    for (i, c) in parts.iter().enumerate() {
        if *c == ".." {
            // The included directory itself (the first component) is the floor.
            if lens.len() <= 1 {
                return Err(format!("its target {target:?} leaves the included directory"));
            }
            so_far.truncate(lens.pop().unwrap_or(0));
        } else {
            push(&mut so_far, &mut lens, c);
        }
        if i + 1 < parts.len() && !dirs.contains(so_far.as_str()) {
            return Err(format!(
                "its target {target:?} goes through {so_far:?}, which is not a directory of the tree (a symlink?)"
            ));
        }
    }
    Ok(())
}

/// Checks a manifest's list of files (untrusted): every path relative and plain, listed once,
/// under a directory listed before it (so nothing lies under a symlink or a file); the
/// included directories themselves listed first as directories; sizes, checksums and targets
/// present exactly where they belong; every symlink's target inside its included directory
/// and not through another symlink.
pub fn check_entries(files: &[FileEntry]) -> std::result::Result<(), String> {
    if files.len() > MAX_ENTRIES {
        return Err(format!("{} file entries (at most {MAX_ENTRIES})", files.len()));
    }
    let mut dirs: HashSet<&str> = HashSet::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let all_dirs: HashSet<&str> = files
        .iter()
        .filter(|f| f.kind == FileKind::Dir)
        .map(|f| f.path.as_str())
        .collect();
    for f in files {
        let p = f.path.as_str();
        check_path(p).map_err(|r| format!("file entry: {r}"))?;
        if !seen.insert(p) {
            return Err(format!("file entry {p:?} listed twice"));
        }
        match p.rsplit_once('/') {
            None if f.kind != FileKind::Dir => {
                return Err(format!("file entry {p:?} is not inside an included directory"))
            }
            None => {}
            Some((parent, _)) if !dirs.contains(parent) => {
                return Err(format!(
                    "file entry {p:?} is not under a directory listed before it (under a symlink or a file?)"
                ))
            }
            Some(_) => {}
        }
        if f.mode > 0o777 {
            return Err(format!("file entry {p:?} has mode {:o}", f.mode));
        }
        match f.kind {
            FileKind::File => {
                let ok = f
                    .sha256
                    .as_deref()
                    .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
                if !ok || f.target.is_some() {
                    return Err(format!("file entry {p:?} needs a SHA-256 and no target"));
                }
            }
            FileKind::Dir | FileKind::Symlink if f.size != 0 || f.sha256.is_some() => {
                return Err(format!("file entry {p:?} is not a regular file but has content"))
            }
            FileKind::Dir => {
                if f.target.is_some() {
                    return Err(format!("directory entry {p:?} has a target"));
                }
                dirs.insert(p);
            }
            FileKind::Symlink => {
                let target = f.target.as_deref().unwrap_or_default();
                check_symlink(p, target, &all_dirs).map_err(|r| format!("symlink {p:?}: {r}"))?;
            }
        }
    }
    Ok(())
}

/// An entry found by [`walk`], with the file it comes from.
#[derive(Debug, Clone)]
pub struct Walked {
    /// The entry as the walk saw it (a file's size, mtime and checksum are set by its copy).
    pub entry: FileEntry,
    /// The file on disk.
    pub source: PathBuf,
}

/// The name an included directory has in the archive: its last component.
fn include_name(dir: &Path) -> Result<String> {
    let name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .or_else(|| {
            std::fs::canonicalize(dir)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_os_string()))
        })
        .ok_or_else(|| Error::InvalidOption(format!("--include {}: cannot tell its name", dir.display())))?;
    utf8_name(dir, &name)
}

fn utf8_name(path: &Path, name: &std::ffi::OsStr) -> Result<String> {
    let s = name.to_str().ok_or_else(|| Error::UnsafeFile {
        path: path.to_path_buf(),
        reason: "its name is not valid UTF-8 (the manifest is JSON); rename it".into(),
    })?;
    if s.chars().any(char::is_control) {
        return Err(Error::UnsafeFile {
            path: path.to_path_buf(),
            reason: "its name holds a control character (newline, tab...); rename it".into(),
        });
    }
    Ok(s.to_string())
}

fn mtime_of(m: &std::fs::Metadata) -> i64 {
    m.mtime()
}

/// Walks the included directories (each must be a directory; two with the same name are
/// refused), returning every entry in tree order: a directory before what it holds, names
/// sorted. Symlinks are read, never followed; one that is absolute or leaves its directory, and
/// any fifo, socket or device, is refused with an error naming it.
pub fn walk(includes: &[PathBuf]) -> Result<Vec<Walked>> {
    let mut out = Vec::new();
    let mut names: HashMap<String, &Path> = HashMap::new();
    for dir in includes {
        let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path: dir.clone() },
            _ => Error::io("stat", dir, e),
        })?;
        if !meta.is_dir() {
            return Err(Error::InvalidOption(format!(
                "--include {}: not a directory (--include takes directories; their files are backed up)",
                dir.display()
            )));
        }
        let name = include_name(dir)?;
        if let Some(other) = names.insert(name.clone(), dir) {
            return Err(Error::InvalidOption(format!(
                "--include {} and --include {} have the same name {name:?}: they would land in the same \
                 place (files/{name}/); include their parent instead, or rename one",
                other.display(),
                dir.display()
            )));
        }
        let top = out.len();
        walk_dir(dir, &name, &meta, &mut out)?;
        // Symlinks are checked against the whole tree of their directory.
        let dirs: HashSet<&str> = out[top..]
            .iter()
            .filter(|w| w.entry.kind == FileKind::Dir)
            .map(|w| w.entry.path.as_str())
            .collect();
        for w in &out[top..] {
            if let (FileKind::Symlink, Some(t)) = (w.entry.kind, &w.entry.target) {
                if let Err(why) = check_symlink(&w.entry.path, t, &dirs) {
                    return Err(Error::UnsafeFile {
                        path: w.source.clone(),
                        reason: format!(
                            "a symlink that cannot be backed up: {why}. litevault records only relative \
                             symlinks that stay inside the included directory; replace it with a copy of \
                             what it points to or a relative link, or move it out of {}",
                            dir.display()
                        ),
                    });
                }
            }
        }
    }
    // The tree as the manifest will list it (checksums are known only once copied).
    check_entries(&widest(&out)).map_err(|r| Error::InvalidOption(format!("--include: {r}")))?;
    Ok(out)
}

fn walk_dir(dir: &Path, rel: &str, meta: &std::fs::Metadata, out: &mut Vec<Walked>) -> Result<()> {
    out.push(Walked {
        entry: FileEntry {
            path: rel.to_string(),
            kind: FileKind::Dir,
            size: 0,
            mode: meta.mode() & 0o777,
            mtime: mtime_of(meta),
            sha256: None,
            target: None,
        },
        source: dir.to_path_buf(),
    });
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let e = e.map_err(|e| Error::io("read directory", dir, e))?;
        let path = e.path();
        // A temp file of litevault's own (a restore in progress) is not the application's.
        let name = utf8_name(&path, &e.file_name())?;
        if name.starts_with(fsutil::TEMP_PREFIX) {
            continue;
        }
        children.push((name, path));
    }
    children.sort();
    for (name, path) in children {
        let rel = format!("{rel}/{name}");
        if rel.len() > MAX_PATH {
            return Err(Error::UnsafeFile {
                path,
                reason: format!("its path is longer than {MAX_PATH} bytes"),
            });
        }
        let m = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // gone already
            Err(e) => return Err(Error::io("stat", &path, e)),
        };
        let ft = m.file_type();
        if ft.is_dir() {
            walk_dir(&path, &rel, &m, out)?;
        } else if ft.is_file() {
            out.push(Walked {
                entry: FileEntry {
                    path: rel,
                    kind: FileKind::File,
                    size: m.len(),
                    mode: m.mode() & 0o777,
                    mtime: mtime_of(&m),
                    sha256: None,
                    target: None,
                },
                source: path,
            });
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| Error::io("read symlink", &path, e))?;
            let target = utf8_name(&path, target.as_os_str())?;
            out.push(Walked {
                entry: FileEntry {
                    path: rel,
                    kind: FileKind::Symlink,
                    size: 0,
                    mode: 0o777,
                    mtime: mtime_of(&m),
                    sha256: None,
                    target: Some(target),
                },
                source: path,
            });
        } else {
            use std::os::unix::fs::FileTypeExt;
            let what = if ft.is_fifo() {
                "a fifo (named pipe)"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file, directory or symlink"
            };
            return Err(Error::UnsafeFile {
                path,
                reason: format!(
                    "{what} cannot be backed up; remove it or move it out of the included directory"
                ),
            });
        }
    }
    Ok(())
}

/// The widest manifest entries `walked` can give once copied (every number at its largest),
/// for the space reserved for a manifest written last.
pub fn widest(walked: &[Walked]) -> Vec<FileEntry> {
    walked
        .iter()
        .map(|w| {
            let mut e = w.entry.clone();
            e.mtime = i64::MIN;
            e.mode = 0o777;
            if e.kind == FileKind::File {
                e.size = u64::MAX;
                e.sha256 = Some("0".repeat(64));
            }
            e
        })
        .collect()
}

/// Where a spooled file's bytes are.
#[derive(Debug)]
pub enum Held {
    /// In memory.
    Memory(Vec<u8>),
    /// In the spool's temp file, at (offset, length).
    Spilled(u64, u64),
}

/// One consistent copy of every file, in memory (small files, up to a budget) or in one unnamed
/// temp file in the backup's work directory (nothing to clean up, even after a crash).
pub struct Spool {
    dir: PathBuf,
    file: Option<File>,
    file_len: u64,
    in_memory: u64,
}

/// A file's state that, unchanged before and after a read, shows the read saw one version.
fn identity(m: &std::fs::Metadata) -> (u64, u64, i64, i64, i64, i64, u64) {
    (
        m.dev(),
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.len(),
    )
}

impl Spool {
    /// A spool whose temp file (made when first needed) lives in `dir`.
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            file: None,
            file_len: 0,
            in_memory: 0,
        }
    }

    /// Forgets everything spooled (the temp file is truncated).
    pub fn clear(&mut self) -> Result<()> {
        if let Some(f) = &self.file {
            f.set_len(0)
                .map_err(|e| Error::io("truncate spool in", &self.dir, e))?;
        }
        self.file_len = 0;
        self.in_memory = 0;
        Ok(())
    }

    fn spill_file(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            let f =
                tempfile::tempfile_in(&self.dir).map_err(|e| Error::io("create spool in", &self.dir, e))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("just created"))
    }

    /// Copies the regular file `w` into the spool as one consistent state (see the module
    /// docs); returns its final entry and where its bytes are, or `None` if it vanished.
    pub fn copy(&mut self, w: &Walked) -> Result<Option<(FileEntry, Held)>> {
        let src = &w.source;
        let mut buf = vec![0u8; 1 << 20];
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt));
            }
            let mut f = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(src)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open", src, e)),
            };
            let before = f.metadata().map_err(|e| Error::io("stat", src, e))?;
            if !before.is_file() {
                return Err(Error::UnsafeFile {
                    path: src.clone(),
                    reason: "it stopped being a regular file during the backup".into(),
                });
            }
            let in_memory = before.len() <= MEMORY_FILE_MAX && self.in_memory + before.len() <= MEMORY_BUDGET;
            let mut hasher = Sha256::new();
            let mut mem = Vec::new();
            let start = self.file_len;
            let mut n = 0u64;
            let mut spill = if in_memory {
                None
            } else {
                let at = self.file_len;
                let sf = self.spill_file()?;
                sf.set_len(at)
                    .map_err(|e| Error::io("truncate spool in", &w.source, e))?;
                sf.seek(io::SeekFrom::Start(at))
                    .map_err(|e| Error::io("seek spool for", &w.source, e))?;
                Some(sf)
            };
            loop {
                let k = match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read", src, e)),
                };
                hasher.update(&buf[..k]);
                n += k as u64;
                match spill.as_mut() {
                    Some(sf) => sf
                        .write_all(&buf[..k])
                        .map_err(|e| Error::io("write spool for", src, e))?,
                    None if n > MEMORY_FILE_MAX => break, // it grew: changed; read again
                    None => mem.extend_from_slice(&buf[..k]),
                }
            }
            let after = f.metadata().map_err(|e| Error::io("stat", src, e))?;
            let still_there = std::fs::symlink_metadata(src)
                .map(|m| (m.dev(), m.ino()) == (before.dev(), before.ino()))
                .unwrap_or(false);
            if identity(&before) != identity(&after) || n != before.len() || !still_there {
                continue;
            }
            let mut entry = w.entry.clone();
            entry.size = n;
            entry.mode = before.mode() & 0o777;
            entry.mtime = before.mtime();
            entry.sha256 = Some(hex(&hasher.finalize()));
            let held = if in_memory {
                self.in_memory += n;
                Held::Memory(mem)
            } else {
                self.file_len = start + n;
                Held::Spilled(start, n)
            };
            return Ok(Some((entry, held)));
        }
        Err(Error::io(
            "copy a consistent state of",
            src,
            io::Error::other(format!(
                "it changed while it was read, {ATTEMPTS} times in a row (is the application writing it? \
                 back up when it is idle, or leave it out of --include)"
            )),
        ))
    }

    /// Writes the bytes of `held` into `out`.
    pub fn write_to(&self, held: &Held, out: &mut dyn Write) -> io::Result<()> {
        match held {
            Held::Memory(v) => out.write_all(v),
            Held::Spilled(start, len) => {
                let f = self
                    .file
                    .as_ref()
                    .ok_or_else(|| io::Error::other("spool file missing"))?;
                let mut buf = vec![0u8; 1 << 20];
                let mut done = 0u64;
                while done < *len {
                    let want = ((*len - done) as usize).min(buf.len());
                    f.read_exact_at(&mut buf[..want], start + done)?;
                    out.write_all(&buf[..want])?;
                    done += want as u64;
                }
                Ok(())
            }
        }
    }
}

/// What the walk's entries became once copied: every entry that is still there, with its
/// content where the spool holds it (regular files), and the paths of those that vanished.
pub struct Copied {
    /// Entries in archive order, with the content of each regular file.
    pub entries: Vec<(FileEntry, Option<Held>)>,
    /// `path`s of files that vanished between the walk and their copy.
    pub vanished: Vec<String>,
}

/// Copies one walked entry: a regular file into `spool`, a directory or a symlink as walked.
/// `None` when the file vanished.
pub fn copy_one(spool: &mut Spool, w: &Walked) -> Result<Option<(FileEntry, Option<Held>)>> {
    match w.entry.kind {
        FileKind::File => Ok(spool.copy(w)?.map(|(e, h)| (e, Some(h)))),
        _ => Ok(Some((w.entry.clone(), None))),
    }
}

/// Copies every walked entry into `spool` (for archives whose manifest is written first).
pub fn copy_all(spool: &mut Spool, walked: &[Walked]) -> Result<Copied> {
    let mut entries = Vec::new();
    let mut vanished = Vec::new();
    for w in walked {
        match copy_one(spool, w)? {
            Some(x) => entries.push(x),
            None => vanished.push(w.entry.path.clone()),
        }
    }
    Ok(Copied { entries, vanished })
}

/// One entry a restore will write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedFile {
    /// Where it goes.
    pub path: PathBuf,
    /// What it is.
    pub kind: FileKind,
    /// Its bytes.
    pub size: u64,
    /// Whether something is there now (replaced with `overwrite`; a directory is kept).
    pub exists: bool,
}

/// What `restore --files-to` will write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilesPlan {
    /// The directory the files go under (absolute).
    pub out: PathBuf,
    /// Entries (files, directories, symlinks) to write.
    pub count: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
    /// Existing files that will be replaced (only with `overwrite`).
    pub replaces: u64,
    /// Every entry, in order.
    pub entries: Vec<PlannedFile>,
}

/// Plans writing `files` under `out`: refuses (changing nothing) any entry whose place under
/// `out` is, or lies under, an existing symlink or a non-directory, and any existing file
/// without `overwrite`. `files` must have passed [`check_entries`] (a manifest read does that).
pub fn plan_files(files: &[FileEntry], out: &Path, overwrite: bool) -> Result<FilesPlan> {
    check_entries(files).map_err(|r| Error::bad_archive(out, r))?;
    let out = std::path::absolute(out).map_err(|e| Error::io("resolve", out, e))?;
    // OUT itself may be a symlink (the user named it); nothing under it may be.
    let out = std::fs::canonicalize(&out).unwrap_or(out);
    match std::fs::metadata(&out) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::InvalidOption(format!(
                "--files-to {}: not a directory",
                out.display()
            )))
        }
        Err(_) if fsutil::parent_dir(&out).is_dir() => {} // created by the restore
        Err(_) => {
            return Err(Error::NotFound {
                path: fsutil::parent_dir(&out),
            })
        }
    }
    let mut entries = Vec::with_capacity(files.len());
    let mut replaces = 0;
    for f in files {
        let path = out.join(&f.path);
        let m = std::fs::symlink_metadata(&path).ok();
        let exists = m.is_some();
        let unsafe_here = |reason: String| Error::UnsafeFile {
            path: path.clone(),
            reason,
        };
        match (&m, f.kind) {
            (None, _) => {}
            (Some(m), _) if m.file_type().is_symlink() && f.kind == FileKind::Dir => {
                return Err(unsafe_here(
                    "a symlink stands where the archive has a directory: restore never writes through a \
                     symlink (remove it, or restore into another directory)"
                        .into(),
                ))
            }
            (Some(m), FileKind::Dir) if m.is_dir() => {}
            (Some(m), FileKind::File | FileKind::Symlink) if m.is_dir() => {
                return Err(unsafe_here(
                    "a directory stands where the archive has a file: it is never replaced (remove it, or \
                     restore into another directory)"
                        .into(),
                ))
            }
            (Some(_), FileKind::Dir) => {
                return Err(unsafe_here(
                    "a file stands where the archive has a directory (remove it, or restore into another \
                     directory)"
                        .into(),
                ))
            }
            (Some(_), _) if !overwrite => return Err(Error::WouldOverwrite { path }),
            (Some(_), _) => replaces += 1,
        }
        entries.push(PlannedFile {
            path,
            kind: f.kind,
            size: f.size,
            exists,
        });
    }
    let (count, bytes) = totals(files);
    Ok(FilesPlan {
        out,
        count,
        bytes,
        replaces,
        entries,
    })
}

/// Something staged, waiting for [`Stager::commit`].
enum Staged {
    File {
        tmp: tempfile::TempPath,
        at: PathBuf,
        replace: bool,
    },
    Symlink {
        tmp: PathBuf,
        at: PathBuf,
        replace: bool,
    },
}

/// Writes an archive's files under a restore directory as they are read: each into a hidden
/// temp file in its final directory (mode and mtime set, fsynced), directories created as
/// needed. Nothing appears under a final name before [`Stager::commit`]; dropped without it,
/// the stager removes its temp files and the directories it created.
pub struct Stager {
    plan: FilesPlan,
    by_path: HashMap<String, usize>,
    created: Vec<PathBuf>,
    staged: Vec<Staged>,
    dirs: Vec<(PathBuf, u32, i64, bool)>,
    links: u64,
}

impl Stager {
    /// A stager for `plan` (from [`plan_files`] on the same manifest).
    pub fn new(plan: FilesPlan, files: &[FileEntry]) -> Stager {
        let by_path = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.clone(), i))
            .collect();
        Stager {
            plan,
            by_path,
            created: Vec::new(),
            staged: Vec::new(),
            dirs: Vec::new(),
            links: 0,
        }
    }

    fn ensure_out(&mut self) -> Result<()> {
        let out = self.plan.out.clone();
        if std::fs::symlink_metadata(&out).is_err() {
            std::fs::create_dir(&out).map_err(|e| Error::io("create directory", &out, e))?;
            self.created.push(out);
        }
        Ok(())
    }

    /// A directory under the restore directory is still a real directory (not a symlink that
    /// appeared since the plan).
    fn check_dir(&self, dir: &Path) -> Result<()> {
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(Error::UnsafeFile {
                path: dir.to_path_buf(),
                reason: "it is no longer a directory (changed during the restore?)".into(),
            }),
        }
    }

    /// Stages one entry whose content (for a regular file) `content` yields.
    pub fn stage(&mut self, entry: &FileEntry, content: &mut dyn Read) -> Result<()> {
        self.ensure_out()?;
        let i = *self
            .by_path
            .get(&entry.path)
            .ok_or_else(|| Error::bad_archive(&self.plan.out, format!("unplanned entry {:?}", entry.path)))?;
        let planned = self.plan.entries[i].clone();
        let at = planned.path.clone();
        let dir = fsutil::parent_dir(&at);
        self.check_dir(&dir)?;
        match entry.kind {
            FileKind::Dir => {
                if !planned.exists {
                    std::fs::create_dir(&at).map_err(|e| Error::io("create directory", &at, e))?;
                    self.created.push(at.clone());
                }
                self.dirs.push((at, entry.mode, entry.mtime, !planned.exists));
            }
            FileKind::File => {
                fsutil::note_temp_dir(&dir);
                let mut tmp = tempfile::Builder::new()
                    .prefix(&fsutil::temp_prefix())
                    .suffix(".partial")
                    .permissions(std::fs::Permissions::from_mode(0o600))
                    .tempfile_in(&dir)
                    .map_err(|e| Error::io("create temp file in", &dir, e))?;
                let tmp_path = tmp.path().to_path_buf();
                io::copy(content, tmp.as_file_mut()).map_err(|e| Error::io("write", &tmp_path, e))?;
                let f = tmp.as_file();
                f.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o777))
                    .map_err(|e| Error::io("set the mode of", &tmp_path, e))?;
                f.set_modified(system_time(entry.mtime))
                    .map_err(|e| Error::io("set the mtime of", &tmp_path, e))?;
                f.sync_all().map_err(|e| Error::io("fsync", &tmp_path, e))?;
                self.staged.push(Staged::File {
                    tmp: tmp.into_temp_path(),
                    at,
                    replace: planned.exists,
                });
            }
            FileKind::Symlink => {
                fsutil::note_temp_dir(&dir);
                self.links += 1;
                let tmp = dir.join(format!("{}link{}.partial", fsutil::temp_prefix(), self.links));
                let target = entry.target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io("create symlink", &tmp, e))?;
                self.staged.push(Staged::Symlink {
                    tmp,
                    at,
                    replace: planned.exists,
                });
            }
        }
        Ok(())
    }

    /// Checks, before anything is put in place (the database included), that every staged
    /// entry can still go where the plan said: its directory is still a real directory, and a
    /// name the plan found free is still free (an application may have created it meanwhile).
    pub fn prepare(&self) -> Result<()> {
        for s in &self.staged {
            let (at, replace) = match s {
                Staged::File { at, replace, .. } | Staged::Symlink { at, replace, .. } => (at, *replace),
            };
            self.check_dir(&fsutil::parent_dir(at))?;
            match std::fs::symlink_metadata(at) {
                Ok(_) if !replace => return Err(Error::WouldOverwrite { path: at.clone() }),
                Ok(m) if m.is_dir() => {
                    return Err(Error::UnsafeFile {
                        path: at.clone(),
                        reason: "a directory is in the way (created during the restore?)".into(),
                    })
                }
                _ => {}
            }
        }
        for (dir, ..) in &self.dirs {
            self.check_dir(dir)?;
        }
        Ok(())
    }

    /// Renames every staged entry into place (an existing file is replaced only where the plan
    /// said so), then sets the directories' modes and mtimes and fsyncs them, through
    /// descriptors opened without following symlinks. Returns how many entries are in place.
    pub fn commit(mut self) -> Result<u64> {
        let mut touched: Vec<PathBuf> = Vec::new();
        let staged = std::mem::take(&mut self.staged);
        let mut it = staged.into_iter();
        let result = (|| -> Result<()> {
            for s in it.by_ref() {
                let at = match s {
                    Staged::File { tmp, at, replace } => {
                        let r = if replace {
                            tmp.persist(&at)
                        } else {
                            tmp.persist_noclobber(&at)
                        };
                        match r {
                            Ok(()) => at,
                            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                                return Err(Error::WouldOverwrite { path: at })
                            }
                            Err(e) => return Err(Error::io("rename temp file to", &at, e.error)),
                        }
                    }
                    Staged::Symlink { tmp, at, replace } => {
                        let r = if !replace && std::fs::symlink_metadata(&at).is_ok() {
                            Err(Error::WouldOverwrite { path: at.clone() })
                        } else {
                            std::fs::rename(&tmp, &at).map_err(|e| Error::io("rename symlink to", &at, e))
                        };
                        if r.is_err() {
                            let _ = std::fs::remove_file(&tmp);
                        }
                        r?;
                        at
                    }
                };
                let dir = fsutil::parent_dir(&at);
                if touched.last() != Some(&dir) && !touched.contains(&dir) {
                    touched.push(dir);
                }
            }
            Ok(())
        })();
        // Whatever was not renamed is removed (the temp paths delete themselves).
        for s in it {
            if let Staged::Symlink { tmp, .. } = s {
                let _ = std::fs::remove_file(tmp);
            }
        }
        result?;
        // Directories' own entries are durable before their modes change (a mode without
        // write or search permission would stop the fsync of a later open).
        for dir in &touched {
            fsutil::sync_dir(dir)?;
        }
        // Deepest first: setting a directory's mtime after its children are in place; through
        // a descriptor opened with O_NOFOLLOW, so a directory swapped for a symlink since the
        // plan is refused, never followed.
        for (dir, mode, mtime, created) in self.dirs.iter().rev() {
            if *created || self.plan.replaces > 0 {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                    .open(dir)
                    .map_err(|e| Error::io("open directory", dir, e))?;
                f.set_modified(system_time(*mtime))
                    .map_err(|e| Error::io("set the mtime of", dir, e))?;
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|e| Error::io("set the mode of", dir, e))?;
                f.sync_all().map_err(|e| Error::io("fsync", dir, e))?;
            }
        }
        if let Some(parent) = self.created.first().map(|d| fsutil::parent_dir(d)) {
            fsutil::sync_dir(&parent)?;
        }
        self.created.clear();
        Ok(self.plan.entries.len() as u64)
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        for s in self.staged.drain(..) {
            if let Staged::Symlink { tmp, .. } = s {
                let _ = std::fs::remove_file(tmp);
            }
        }
        // Only directories this restore created, and only if empty (deepest first).
        for d in self.created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn system_time(secs: i64) -> std::time::SystemTime {
    if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    }
}

/// The SHA-256 of `data`, hex (for tests and small entries).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: FileKind, target: Option<&str>) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            size: 0,
            mode: 0o644,
            mtime: 0,
            sha256: (kind == FileKind::File).then(|| "0".repeat(64)),
            target: target.map(str::to_string),
        }
    }

    #[test]
    fn entries_that_could_escape_are_refused() {
        use FileKind::*;
        let ok = vec![
            e("up", Dir, None),
            e("up/a", File, None),
            e("up/d", Dir, None),
            e("up/d/l", Symlink, Some("../a")),
        ];
        assert_eq!(check_entries(&ok), Ok(()));
        for bad in [
            vec![e("up", Dir, None), e("up/../../x", File, None)],
            vec![e("/up", Dir, None)],
            vec![e("up", Dir, None), e("up/l", Symlink, Some("/etc"))],
            vec![e("up", Dir, None), e("up/l", Symlink, Some("../x"))],
            vec![
                e("up", Dir, None),
                e("up/l", Symlink, Some("d")),
                e("up/l/x", File, None),
            ],
            vec![e("up", Dir, None), e("up/a", File, None), e("up/a", File, None)],
            vec![e("up/a", File, None)],
            vec![
                e("up", Dir, None),
                e("up/l", Symlink, Some("m/..")),
                e("up/m", Symlink, Some(".")),
            ],
            // Through a name that is not a directory of the tree: on a case-insensitive file
            // system `up/d/L` is the symlink `up/d/l`, which points back up.
            vec![
                e("up", Dir, None),
                e("up/d", Dir, None),
                e("up/d/l", Symlink, Some("..")),
                e("up/m", Symlink, Some("d/L/d/L/../../../../etc")),
            ],
            vec![e("up", Dir, None), e("up/m", Symlink, Some(&"d/".repeat(300)))],
        ] {
            assert!(check_entries(&bad).is_err(), "{bad:?}");
        }
        // A long but legitimate target is checked in linear time and passes.
        let mut deep = vec![e("up", Dir, None)];
        let mut p = "up".to_string();
        for _ in 0..200 {
            p.push_str("/d");
            deep.push(e(&p, Dir, None));
        }
        deep.push(e("up/l", Symlink, Some(&format!("{}x", "d/".repeat(200)))));
        assert_eq!(check_entries(&deep), Ok(()));
    }

    #[test]
    fn a_name_taken_after_the_plan_stops_the_restore_before_anything_is_in_place() {
        let out = tempfile::tempdir().unwrap();
        let mut f = e("up/a", FileKind::File, None);
        f.size = 2;
        let files = vec![e("up", FileKind::Dir, None), f];
        let plan = plan_files(&files, out.path(), false).unwrap();
        let mut st = Stager::new(plan, &files);
        st.stage(&files[0], &mut io::empty()).unwrap();
        st.stage(&files[1], &mut &b"hi"[..]).unwrap();
        st.prepare().unwrap();
        // The application creates the file meanwhile.
        std::fs::write(out.path().join("up/a"), b"app's").unwrap();
        assert!(matches!(st.prepare(), Err(Error::WouldOverwrite { .. })));
        drop(st);
        assert_eq!(std::fs::read(out.path().join("up/a")).unwrap(), b"app's");
        let names: Vec<_> = std::fs::read_dir(out.path().join("up")).unwrap().collect();
        assert_eq!(names.len(), 1, "temp files left: {names:?}");
    }
}
