//! The page-set reader of incremental archives. The input is two archives, a parent and its
//! child (a little-endian u32 length of the parent, the parent, then the child), stored as
//! `base-20260101T000000Z.tar.zst` and `base-20260102T000000Z.tar.zst` in a directory. An
//! incremental backup reads the newest one as its parent (`chain::find_parent`: its manifest,
//! the byte range of its `pages.hashes` frame, its SHA-256); a restore composes the chain that
//! ends at the child (`chain::links` and `chain::compose`: every link read whole, `pages.bin`
//! records applied, checksums compared). `pageset::decode` gets the raw input too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::location::local::LocalDir;
use litevault::ops::chain;
use litevault::sqlite::pageset;
use litevault::NoProgress;

#[path = "common.rs"]
mod common;

const PARENT: &str = "base-20260101T000000Z.tar.zst";
const CHILD: &str = "base-20260102T000000Z.tar.zst";

fuzz_target!(|data: &[u8]| {
    if let Some(hashes) = pageset::decode(data) {
        assert_eq!(pageset::encode(&hashes), data);
    }
    if data.len() < 4 {
        return;
    }
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (parent, child) = rest.split_at(n.min(rest.len()));
    let dir = common::scratch().join("chain");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(PARENT), parent).expect("write");
    let child_path = dir.join(CHILD);
    std::fs::write(&child_path, child).expect("write");

    let loc = LocalDir::new(&dir).expect("location");
    let ctx = litevault::Context::new();
    if let Ok(p) = chain::find_parent(&ctx, &loc, "base", None) {
        assert_eq!(p.link.name, CHILD);
    }
    let out_path = common::scratch().join("composed.db");
    let out = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&out_path)
        .expect("open output");
    let _ = chain::compose(
        &ctx,
        &child_path,
        &out,
        &out_path,
        &mut litevault::format::archive::DiscardFiles,
        &NoProgress,
    );
});
