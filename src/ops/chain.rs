//! Incremental chains: choosing an incremental backup's parent, and composing a chain back into
//! a database for restore and verify.
//!
//! A chain is a full archive followed by incremental archives, each naming its parent (the
//! newest backup of the same name in the same location when it was taken) by object name,
//! archive SHA-256 and manifest SHA-256. [`find_parent`] picks the parent for a new incremental
//! or says why the backup must be full instead; [`compose`] streams the chain, base first, into
//! one database file and proves the result bit for bit against the newest link's
//! `snapshot_sha256`, or for a link that records none (`litevault/3`), its page-hash table. A missing or damaged link is refused by name before anything is used.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::archive::{self, ArchiveContents, Compression};
use crate::format::manifest::{Manifest, ParentLink};
use crate::location::{self, Location};
use crate::model::hex;
use crate::ops::Context;
use crate::progress::Progress;
use crate::sqlite::pageset::{self, PageHash};

/// Parses a point in time for `restore --latest --at`: RFC 3339 (`2026-12-01T09:00:00Z`,
/// `2026-12-01T10:00:00+01:00`) or a duration before now (`2h ago`, `1d12h ago`).
pub fn parse_at(text: &str) -> std::result::Result<i64, String> {
    parse_at_ms(text).map(|ms| ms.div_euclid(1000))
}

/// [`parse_at`] in milliseconds since the epoch (an RFC 3339 time keeps its fraction of a
/// second): the precision of replicated transactions' times.
pub fn parse_at_ms(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    if let Some(d) = t.strip_suffix("ago") {
        let secs = crate::model::time::parse_duration(d.trim())?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        return i64::try_from(secs)
            .ok()
            .and_then(|s| now.checked_sub(s))
            .map(|s| s * 1000)
            .ok_or_else(|| format!("{text:?} is too long ago"));
    }
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            format!("{text:?} is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor a duration ago (2h ago)")
        })
}

pub use crate::format::manifest::MAX_DEPTH;

/// The parent an incremental backup builds on.
#[derive(Debug, Clone)]
pub struct Parent {
    /// How the child records it.
    pub link: ParentLink,
    /// The chain's key for page hashes.
    pub key: crate::sqlite::pageset::Key,
    /// The parent's page hashes.
    pub hashes: Vec<PageHash>,
    /// The parent's chain depth.
    pub depth: u32,
    /// The parent's page size.
    pub page_size: u32,
}

/// Finds the parent for an incremental backup of `name` in `loc`: the newest backup of that
/// name, if it can be one. `Err(reason)` says why the backup must be full instead.
pub fn find_parent(
    ctx: &Context,
    loc: &dyn Location,
    name: &str,
    full_every: Option<u32>,
) -> std::result::Result<Parent, String> {
    let newest = latest(ctx, loc, name, None)
        .map_err(|e| format!("the location cannot be listed ({e})"))?
        .ok_or_else(|| format!("no earlier backup of {name:?} in {}", loc.url()))?;
    let encrypted = newest.ends_with(crate::format::crypt::EXTENSION);
    if encrypted {
        if let Some(found) = recall_parent(loc, name, &newest, full_every) {
            return found;
        }
    }
    let path = loc.object_path(&newest);
    // One read of the head gives the manifest and its stored bytes' SHA-256.
    let (m, manifest_json) = match archive::read_manifest_and_sha256(&path, ctx.identities()) {
        Ok(found) => found,
        Err(_) if crate::format::dump::is_dump_name(&newest) => {
            return Err(format!("the newest backup {newest} is an SQL dump"))
        }
        Err(Error::Crypt { detail, .. }) => {
            return Err(format!(
                "the newest backup {newest} is encrypted and this machine has no record of its page hashes ({detail})"
            ))
        }
        Err(e) => return Err(format!("the newest backup {newest} is unreadable: {e}")),
    };
    if m.compression != Compression::Zstd {
        return Err(format!(
            "the newest backup {newest} is not zstd-compressed (no page-hash table)"
        ));
    }
    if m.corrupt {
        return Err(format!("the newest backup {newest} is marked corrupt"));
    }
    let Some(ph) = m.page_hashes.clone() else {
        return Err(format!(
            "the newest backup {newest} has no page hashes (made by an older litevault)"
        ));
    };
    if let Some(n) = full_every {
        if m.chain_depth.saturating_add(1) >= n {
            return Err(format!(
                "--full-every {n} reached (the newest backup is link {} of its chain)",
                m.chain_depth
            ));
        }
    }
    if m.chain_depth >= MAX_DEPTH {
        return Err(format!("the chain is {MAX_DEPTH} links long"));
    }
    // A parent whose own chain is broken could not be restored: nor could its children.
    if m.kind == "incremental" {
        links(ctx, &path).map_err(|e| format!("the chain of the newest backup {newest} is broken ({e})"))?;
    }
    let key = pageset::parse_key(&ph.key).ok_or_else(|| format!("{newest}: invalid page-hash key"))?;
    let hashes = if encrypted {
        read_hashes_streamed(ctx, &path, &ph)
    } else {
        read_hashes(loc, &newest, &ph)
    }
    .map_err(|e| format!("the page hashes of {newest} cannot be read: {e}"))?;
    let archive_sha256 = archive_sha256(loc, &newest)
        .map_err(|e| format!("the newest backup {newest} cannot be read: {e}"))?;
    Ok(Parent {
        link: ParentLink {
            name: newest,
            archive_sha256,
            manifest_sha256: manifest_json,
            created_at: m.created_at.clone(),
        },
        key,
        hashes,
        depth: m.chain_depth,
        page_size: m.db.page_size,
    })
}

/// Reads a page-hash table through its frame's byte range (one range read), checked against
/// the SHA-256 its manifest records.
fn read_hashes(loc: &dyn Location, name: &str, ph: &pageset::PageHashes) -> Result<Vec<PageHash>> {
    let path = loc.object_path(name);
    let (start, len) = ph
        .frame
        .ok_or_else(|| Error::bad_archive(&path, "no byte range for the page-hash table"))?;
    let want = ph
        .count
        .checked_mul(pageset::HASH_LEN as u64)
        .filter(|w| *w <= usize::MAX as u64 / 2)
        .ok_or_else(|| Error::bad_archive(&path, "page-hash table too large"))?;
    if len > want.saturating_add(64 << 10) {
        return Err(Error::bad_archive(&path, "page-hash frame larger than its table"));
    }
    let frame = loc.read_range(name, start, len)?;
    let mut d = zstd::stream::read::Decoder::new(&frame[..]).map_err(|e| Error::io("decode", &path, e))?;
    let mut tar_bytes = Vec::new();
    (&mut d)
        .take(want.saturating_add(1024 + 512))
        .read_to_end(&mut tar_bytes)
        .map_err(|e| Error::bad_archive(&path, format!("page-hash frame: {e}")))?;
    let end = 512 + want as usize;
    let table = tar_bytes
        .get(512..end)
        .ok_or_else(|| Error::bad_archive(&path, "page-hash frame is truncated"))?;
    if hex(&Sha256::digest(table)) != ph.sha256 {
        return Err(Error::bad_archive(
            &path,
            "page-hash table does not match its checksum",
        ));
    }
    pageset::decode(table).ok_or_else(|| Error::bad_archive(&path, "page-hash table has a partial entry"))
}

/// Reads a page-hash table by reading the archive through to it (an encrypted archive, whose
/// byte ranges mean nothing in clear), checked against the SHA-256 its manifest records.
fn read_hashes_streamed(ctx: &Context, path: &Path, ph: &pageset::PageHashes) -> Result<Vec<PageHash>> {
    let want = ph
        .count
        .checked_mul(pageset::HASH_LEN as u64)
        .filter(|w| *w <= usize::MAX as u64 / 2)
        .ok_or_else(|| Error::bad_archive(path, "page-hash table too large"))?;
    let (_, reader) = archive::open_reader(path, ctx.identities())?;
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|e| Error::bad_archive(path, format!("cannot read archive: {e}")))?;
    for entry in entries.raw(true) {
        let entry = entry.map_err(|e| Error::bad_archive(path, format!("cannot read archive: {e}")))?;
        if entry.path_bytes().as_ref() != pageset::HASHES_ENTRY.as_bytes() {
            continue;
        }
        if entry.size() != want {
            return Err(Error::bad_archive(
                path,
                "page-hash table of another size than its manifest says",
            ));
        }
        let mut table = Vec::with_capacity(want as usize);
        entry
            .take(want)
            .read_to_end(&mut table)
            .map_err(|e| Error::bad_archive(path, format!("page-hash table: {e}")))?;
        if hex(&Sha256::digest(&table)) != ph.sha256 {
            return Err(Error::bad_archive(
                path,
                "page-hash table does not match its checksum",
            ));
        }
        return pageset::decode(&table)
            .ok_or_else(|| Error::bad_archive(path, "page-hash table has a partial entry"));
    }
    Err(Error::bad_archive(path, "no page-hash table"))
}

/// What this machine remembers of the newest encrypted archive of a name it wrote to a
/// location, so that the next incremental need not decrypt it (see [`remember_parent`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ParentRecord {
    name: String,
    size: u64,
    archive_sha256: String,
    manifest_sha256: String,
    created_at: String,
    key: String,
    page_size: u32,
    depth: u32,
    count: u64,
    table_sha256: String,
    /// The names of its parents, base first (they must all still exist).
    ancestors: Vec<String>,
}

/// Where the record of `db_name`'s newest encrypted archive in `loc` is kept (two files:
/// `.json` and `.hashes`).
fn parent_record_file(loc: &dyn Location, db_name: &str) -> Option<PathBuf> {
    let dir = state_dir_for(loc)?;
    let id = hex(&Sha256::digest(loc.url().as_bytes()));
    let name = hex(&Sha256::digest(db_name.as_bytes()));
    Some(
        dir.join("chains")
            .join(format!("{}-{}.json", &id[..16], &name[..16])),
    )
}

/// Records, on this machine, what the next incremental needs of the encrypted archive just
/// published (page hashes and chain facts), so that it does not have to read (decrypt) its
/// parent. Best effort: without the record, the next incremental reads the parent with the
/// identity given, or is full and says why. The record holds keyed page hashes, not content;
/// it is written with mode 0600.
pub fn remember_parent(
    loc: &dyn Location,
    db_name: &str,
    published: &location::Published,
    m: &Manifest,
    table: &[u8],
) {
    let Some(ph) = &m.page_hashes else { return };
    let Some(file) = parent_record_file(loc, db_name) else {
        return;
    };
    let ancestors = match &m.parent {
        None => Vec::new(),
        Some(p) => match read_record(&file) {
            Some((r, _)) if r.name == p.name => {
                let mut a = r.ancestors;
                a.push(r.name);
                a
            }
            // Nothing known of the parent's own chain: no record (the next one reads).
            _ => {
                let _ = std::fs::remove_file(&file);
                return;
            }
        },
    };
    let Ok(json) = serde_json::to_vec_pretty(m) else {
        return;
    };
    let record = ParentRecord {
        name: published.name.clone(),
        size: published.size,
        archive_sha256: published.sha256.clone(),
        manifest_sha256: hex(&Sha256::digest(&json)),
        created_at: m.created_at.clone(),
        key: ph.key.clone(),
        page_size: m.db.page_size,
        depth: m.chain_depth,
        count: ph.count,
        table_sha256: ph.sha256.clone(),
        ancestors,
    };
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let write = |path: &Path, bytes: &[u8]| -> Result<()> {
        let mut f = crate::fsutil::AtomicFile::create(path, 0o600)?;
        f.file()
            .write_all(bytes)
            .map_err(|e| Error::io("write", path, e))?;
        f.commit_replace().map(|_| ())
    };
    let Ok(record_json) = serde_json::to_vec_pretty(&record) else {
        return;
    };
    // The table first: a record always points at a table of its own.
    if write(&file.with_extension("hashes"), table).is_err() || write(&file, &record_json).is_err() {
        let _ = std::fs::remove_file(&file);
    }
}

fn read_record(file: &Path) -> Option<(ParentRecord, Vec<u8>)> {
    let r: ParentRecord = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let table = std::fs::read(file.with_extension("hashes")).ok()?;
    (hex(&Sha256::digest(&table)) == r.table_sha256).then_some((r, table))
}

/// The parent for an incremental from this machine's record of `newest` (an encrypted archive),
/// when there is one that fits: the same name and size in the location, and every ancestor
/// still there. `None`: no usable record (the caller reads the archive instead).
fn recall_parent(
    loc: &dyn Location,
    db_name: &str,
    newest: &str,
    full_every: Option<u32>,
) -> Option<std::result::Result<Parent, String>> {
    let file = parent_record_file(loc, db_name)?;
    let (r, table) = read_record(&file)?;
    if r.name != newest {
        return None;
    }
    let listed: std::collections::HashMap<String, u64> =
        loc.list().ok()?.into_iter().map(|m| (m.name, m.size)).collect();
    if listed.get(newest) != Some(&r.size) {
        return None;
    }
    if let Some(missing) = r.ancestors.iter().find(|a| !listed.contains_key(*a)) {
        return Some(Err(format!(
            "the chain of the newest backup {newest} is broken (its parent {missing} is missing)"
        )));
    }
    if let Some(n) = full_every {
        if r.depth.saturating_add(1) >= n {
            return Some(Err(format!(
                "--full-every {n} reached (the newest backup is link {} of its chain)",
                r.depth
            )));
        }
    }
    if r.depth >= MAX_DEPTH {
        return Some(Err(format!("the chain is {MAX_DEPTH} links long")));
    }
    let key = pageset::parse_key(&r.key)?;
    let hashes = pageset::decode(&table)?;
    if hashes.len() as u64 != r.count {
        return None;
    }
    Some(Ok(Parent {
        link: ParentLink {
            name: r.name,
            archive_sha256: r.archive_sha256,
            manifest_sha256: r.manifest_sha256,
            created_at: r.created_at,
        },
        key,
        hashes,
        depth: r.depth,
        page_size: r.page_size,
    }))
}

/// The SHA-256 of archive `name`: from this machine's record of the backups it made (see
/// [`remember`]), else by reading the archive once.
fn archive_sha256(loc: &dyn Location, name: &str) -> Result<String> {
    if let Some(sum) = recall(loc, name) {
        return Ok(sum);
    }
    let mut r = loc.read_stream(name)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| {
            location::download_error(&loc.object_path(name), &e)
                .unwrap_or_else(|| Error::io("read", loc.object_path(name), e))
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Where this machine records the SHA-256 of the archives it wrote (so that the next
/// incremental need not read its parent whole to learn it): `$LITEVAULT_STATE_DIR`, else the
/// platform state directory's `litevault` (e.g. `~/.local/state/litevault`).
fn state_file(loc: &dyn Location) -> Option<PathBuf> {
    let dir = state_dir_for(loc)?;
    let id = hex(&Sha256::digest(loc.url().as_bytes()));
    Some(dir.join("archives").join(format!("{}.json", &id[..16])))
}

/// [`state_dir`] for records about `loc`; none for a `mem://` location, whose objects die with
/// the process (a record on disk would outlive them and describe another bucket of that name).
fn state_dir_for(loc: &dyn Location) -> Option<PathBuf> {
    if location::Scheme::of_str(&loc.url()) == location::Scheme::Memory {
        return None;
    }
    state_dir()
}

/// What litevault keeps on this machine: `$LITEVAULT_STATE_DIR`, else the platform state
/// directory's `litevault` (e.g. `~/.local/state/litevault`).
pub(crate) fn state_dir() -> Option<PathBuf> {
    std::env::var_os("LITEVAULT_STATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            dirs::state_dir()
                .or_else(dirs::data_dir)
                .map(|d| d.join("litevault"))
        })
}

/// Records archive `name`'s SHA-256 (best effort; a failure only costs a later read).
pub fn remember(loc: &dyn Location, name: &str, sha256: &str) {
    let Some(file) = state_file(loc) else { return };
    let mut map: std::collections::BTreeMap<String, String> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    map.insert(name.to_string(), sha256.to_string());
    // Bounded: the newest entries by name stamp are the ones a parent lookup needs.
    while map.len() > 1000 {
        let Some(k) = map.keys().next().cloned() else {
            break;
        };
        map.remove(&k);
    }
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(json) = serde_json::to_vec(&map) else {
        return;
    };
    let tmp = file.with_extension(format!("json.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
}

fn recall(loc: &dyn Location, name: &str) -> Option<String> {
    let file = state_file(loc)?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    map.get(name).cloned()
}

/// The links of the chain that ends at `path`, base (full) first, with their manifests. Every
/// link must exist and name a parent in the same location.
pub fn links(ctx: &Context, path: &Path) -> Result<Vec<(PathBuf, Manifest)>> {
    let (loc, _) = location::split_object(path)?;
    let mut chain = vec![(
        path.to_path_buf(),
        crate::format::dump::read_manifest(path, ctx.identities())?,
    )];
    while let Some(parent) = chain.last().and_then(|(_, m)| m.parent.clone()) {
        if chain.len() as u32 > MAX_DEPTH {
            return Err(Error::bad_archive(
                path,
                format!("the chain is longer than {MAX_DEPTH} links"),
            ));
        }
        let child = chain.last().map(|(p, _)| p.clone()).unwrap_or_default();
        let ppath = loc.object_path(&parent.name);
        let m = match crate::format::dump::read_manifest(&ppath, ctx.identities()) {
            Ok(m) => m,
            Err(Error::NotFound { .. }) => {
                return Err(Error::bad_archive(
                    &child,
                    format!("its parent {} is missing: the chain is broken", ppath.display()),
                ))
            }
            // No key (or not the right one) for an encrypted link: not damage.
            Err(e @ Error::Crypt { .. }) => return Err(e),
            Err(e) => {
                return Err(Error::bad_archive(
                    &child,
                    format!("its parent {} cannot be read: {e}", ppath.display()),
                ))
            }
        };
        if m.db.page_size != chain[chain.len() - 1].1.db.page_size {
            return Err(Error::bad_archive(&child, "its parent has another page size"));
        }
        chain.push((ppath, m));
    }
    chain.reverse();
    Ok(chain)
}

/// Composes the chain that ends at `path` into `out` (an empty file): the base's database,
/// then each incremental's pages; checks every link's checksums and that each link is the
/// archive its child names (archive and manifest SHA-256), then the result against the newest
/// link's record: its `snapshot_sha256`, or (format `litevault/3`) the SHA-256 of the result's
/// page hashes under the chain's key. Returns the newest link's contents. The files beside the database
/// are those of the newest link (every link carries its own full copy): they go to `files`;
/// those of the other links are only read.
pub fn compose(
    ctx: &Context,
    path: &Path,
    out: &std::fs::File,
    out_path: &Path,
    files: &mut dyn archive::FileSink,
    progress: &dyn Progress,
) -> Result<ArchiveContents> {
    let chain = links(ctx, path)?;
    let ids = ctx.identities();
    let newest = chain.len() - 1;
    let mut last: Option<ArchiveContents> = None;
    for (i, (link, m)) in chain.iter().enumerate() {
        let contents = if i == 0 {
            if m.kind != "full" {
                return Err(Error::bad_archive(
                    link,
                    "a chain's first link is not a full archive",
                ));
            }
            let mut w = io::BufWriter::with_capacity(1 << 20, out);
            let c = if i == newest {
                archive::read_archive_with(link, &mut w, files, progress, ids)?
            } else {
                archive::read_archive_as(
                    link,
                    &mut w,
                    false,
                    true,
                    &mut archive::DiscardFiles,
                    progress,
                    ids,
                )?
            };
            w.flush().map_err(|e| Error::io("write", out_path, e))?;
            c
        } else {
            let mut w = PageApplier::new(out, m.db.page_size, m.db.page_count);
            let c = if i == newest {
                archive::read_archive_as(link, &mut w, true, false, files, progress, ids)?
            } else {
                archive::read_archive_as(
                    link,
                    &mut w,
                    true,
                    true,
                    &mut archive::DiscardFiles,
                    progress,
                    ids,
                )?
            };
            w.finish().map_err(|e| Error::io("write", out_path, e))?;
            // A database only grows by pages that changed (so are in this link): a larger size
            // is a hostile claim, refused before it becomes a sparse file to hash.
            let reached = out.metadata().map_err(|e| Error::io("stat", out_path, e))?.len();
            if m.db_size > reached {
                return Err(Error::bad_archive(
                    link,
                    format!(
                        "its manifest says the database is {} bytes, but its pages and its parent's end at {reached}",
                        m.db_size
                    ),
                ));
            }
            out.set_len(m.db_size)
                .map_err(|e| Error::io("truncate", out_path, e))?;
            c
        };
        contents.ensure_checksums(link)?;
        if let Some((child, cm)) = chain.get(i + 1) {
            let p = cm
                .parent
                .as_ref()
                .ok_or_else(|| Error::bad_archive(child, "no parent recorded"))?;
            let manifest_sum = contents
                .computed
                .iter()
                .find(|(n, _)| n == archive::MANIFEST_ENTRY)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            // Every link but the newest is read with its archive's SHA-256.
            let same_archive = contents.archive_sha256.as_deref() == Some(p.archive_sha256.as_str());
            if manifest_sum != p.manifest_sha256 || !same_archive {
                return Err(Error::bad_archive(
                    child,
                    format!(
                        "its parent {} is not the archive it was made from (replaced or modified)",
                        link.display()
                    ),
                ));
            }
        }
        last = Some(contents);
    }
    let last = last.ok_or_else(|| Error::bad_archive(path, "empty chain"))?;
    let m = &last.manifest;
    let (want, got, what) = match (&m.snapshot_sha256, &m.page_hashes) {
        (Some(want), _) => {
            let got = hash_file(out).map_err(|e| Error::io("read", out_path, e))?;
            (want.clone(), got, "")
        }
        (None, Some(ph)) => {
            let key = pageset::parse_key(&ph.key)
                .ok_or_else(|| Error::bad_archive(path, "its page-hash key is not 32 bytes of hex"))?;
            let got = hash_pages(out, &key, m.db.page_size, ph.count)
                .map_err(|e| Error::io("read", out_path, e))?;
            (ph.sha256.clone(), got, " (its page-hash table)")
        }
        (None, None) => return Err(Error::bad_archive(path, "no snapshot SHA-256 recorded")),
    };
    if got != want {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            entry: format!("the database composed from {} links{what}", chain.len()),
            expected: want,
            actual: got,
        });
    }
    Ok(last)
}

/// SHA-256 of the page-hash table of the database in `f` (pages of `page_size` bytes hashed
/// under `key`), as the newest link records it; a file of another page count never matches.
fn hash_pages(f: &std::fs::File, key: &pageset::Key, page_size: u32, count: u64) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let ps = page_size as usize;
    let len = f.metadata()?.len();
    if ps == 0 || len != count.saturating_mul(ps as u64) {
        return Ok(format!(
            "(a database of {len} bytes, not {count} pages of {page_size})"
        ));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; (1 << 20) / ps.max(1) * ps];
    let mut at = 0u64;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        f.read_exact_at(&mut buf[..want], at)?;
        for page in buf[..want].chunks_exact(ps) {
            h.update(pageset::page_hash(key, page));
        }
        at += want as u64;
    }
    Ok(hex(&h.finalize()))
}

fn hash_file(f: &std::fs::File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hex(&h.finalize()))
}

/// Writes `pages.bin` records (4-byte page number, page) arriving as a stream into a file.
struct PageApplier<'a> {
    file: &'a std::fs::File,
    page_size: usize,
    page_count: u64,
    buf: Vec<u8>,
}

impl<'a> PageApplier<'a> {
    fn new(file: &'a std::fs::File, page_size: u32, page_count: u64) -> Self {
        PageApplier {
            file,
            page_size: page_size as usize,
            page_count,
            buf: Vec::with_capacity(4 + page_size as usize),
        }
    }

    fn finish(self) -> io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other("pages.bin ends inside a record"))
        }
    }
}

impl Write for PageApplier<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let record = 4 + self.page_size;
        let mut rest = data;
        while !rest.is_empty() {
            let take = (record - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == record {
                let pgno = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as u64;
                if pgno == 0 || pgno > self.page_count {
                    return Err(io::Error::other(format!(
                        "page number {pgno} in pages.bin is outside the database's {} pages",
                        self.page_count
                    )));
                }
                self.file
                    .write_all_at(&self.buf[4..], (pgno - 1) * self.page_size as u64)?;
                self.buf.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The newest backup (archive or dump) of `name` in `loc`, created at or before `at` (seconds
/// since the epoch) when given: by the stamp in the object names litevault gives
/// (`<name>-<stamp>...`); backups of the same second by the instant their snapshots were fixed
/// (their manifests' `snapshot_at`, read only for such ties), then by the name's `-N`. Safety
/// archives (`<name>-pre-restore-...`) belong to their own names.
pub fn latest(ctx: &Context, loc: &dyn Location, name: &str, at: Option<i64>) -> Result<Option<String>> {
    let mut found: Vec<(i64, u32, String)> = Vec::new();
    for m in loc.list()? {
        if !location::is_backup_name(&m.name) {
            continue;
        }
        let Some((group, created)) = crate::model::naming::parse_backup_name(&m.name) else {
            continue;
        };
        if group != name || at.is_some_and(|t| created > t) {
            continue;
        }
        found.push((created, location::sequence(&m.name), m.name));
    }
    let Some(newest) = found.iter().map(|(c, ..)| *c).max() else {
        return Ok(None);
    };
    found.retain(|(c, ..)| *c == newest);
    if found.len() == 1 {
        return Ok(found.pop().map(|(.., n)| n));
    }
    // Same second: the manifests tell which snapshot is the newer (one that cannot be read
    // counts as the start of its second).
    let best = found
        .into_iter()
        .map(|(created, seq, n)| {
            let nanos = crate::format::dump::read_manifest(&loc.object_path(&n), ctx.identities())
                .map(|m| m.snapshot_offset_ns(created))
                .unwrap_or(0);
            ((nanos, seq), n)
        })
        .max();
    Ok(best.map(|(_, n)| n))
}

/// The newest backup of `name` in `loc` (at or before `at`) whose manifest has every label of
/// `wanted` ([`crate::model::labels::matches`]); [`latest`] when `wanted` is empty. Manifests
/// are read newest first until one matches; one that cannot be read does not match.
pub fn latest_labelled(
    ctx: &Context,
    loc: &dyn Location,
    name: &str,
    at: Option<i64>,
    wanted: &[(String, String)],
) -> Result<Option<String>> {
    if wanted.is_empty() {
        return latest(ctx, loc, name, at);
    }
    let mut by_second: std::collections::BTreeMap<i64, Vec<(u32, String)>> = Default::default();
    for m in loc.list()? {
        if !location::is_backup_name(&m.name) {
            continue;
        }
        let Some((group, created)) = crate::model::naming::parse_backup_name(&m.name) else {
            continue;
        };
        if group == name && at.is_none_or(|t| created <= t) {
            by_second
                .entry(created)
                .or_default()
                .push((location::sequence(&m.name), m.name));
        }
    }
    for (created, names) in by_second.into_iter().rev() {
        let best = names
            .into_iter()
            .filter_map(|(seq, n)| {
                let m = crate::format::dump::read_manifest(&loc.object_path(&n), ctx.identities()).ok()?;
                crate::model::labels::matches(&m.labels, wanted)
                    .then(|| ((m.snapshot_offset_ns(created), seq), n))
            })
            .max();
        if let Some((_, n)) = best {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// [`latest`], or [`Error::NotFound`] naming what was looked for when there is none.
pub fn latest_required(ctx: &Context, loc: &dyn Location, name: &str, at: Option<i64>) -> Result<String> {
    latest(ctx, loc, name, at)?.ok_or_else(|| none_found(loc, name, at, &[]))
}

/// The [`Error::NotFound`] of a search for the newest backup of `name` (at or before `at`, with
/// the labels `wanted`) that found none.
pub fn none_found(loc: &dyn Location, name: &str, at: Option<i64>, wanted: &[(String, String)]) -> Error {
    let labels: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Error::NotFound {
        path: loc.object_path(&format!(
            "{name}-<stamp>.*{}{}",
            at.map(|t| format!(" at or before {}", location::format_time(t)))
                .unwrap_or_default(),
            if labels.is_empty() {
                String::new()
            } else {
                format!(" with label {}", labels.join(", "))
            }
        )),
    }
}
