//! The conformance suite every [`Location`] implementation must pass: the contracts of the
//! trait's methods, checked against a real, empty location. The local directory runs it in the
//! unit tests, S3 in the integration tests against a real server.

use std::io::{Read, Write};

use super::store::{CreateOptions, Location};
use crate::error::Error;

/// Runs every contract check against `loc`, which must be empty and writable. Returns the
/// first contract broken, described.
pub fn check(loc: &dyn Location) -> Result<(), String> {
    let fail = |what: &str, e: Error| format!("{what}: {e}");
    if !loc
        .list()
        .map_err(|e| fail("list an empty location", e))?
        .is_empty()
    {
        return Err("the location is not empty".into());
    }
    // Not found: head is None, reads are NotFound, delete is fine.
    if loc.head("a.tar.zst").map_err(|e| fail("head", e))?.is_some() {
        return Err("head of a missing object is not None".into());
    }
    match loc.read_range("a.tar.zst", 0, 10) {
        Err(Error::NotFound { .. }) => {}
        other => return Err(format!("read_range of a missing object: {other:?}")),
    }
    match loc.read_stream("a.tar.zst") {
        Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(format!("read_stream of a missing object: {e}")),
        Ok(_) => return Err("read_stream of a missing object succeeded".into()),
    }
    loc.delete("a.tar.zst")
        .map_err(|e| fail("delete of a missing object", e))?;

    // A small object, hashed as written.
    let small: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = loc
        .create("a.tar.zst", &CreateOptions::default())
        .map_err(|e| fail("create", e))?;
    w.write_all(&small).map_err(|e| format!("write: {e}"))?;
    if loc.head("a.tar.zst").map_err(|e| fail("head", e))?.is_some() {
        return Err("an object is visible before finish".into());
    }
    let p = w.finish(None).map_err(|e| fail("finish", e))?;
    if p.size != small.len() as u64
        || p.sha256 != crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(&small))
    {
        return Err(format!("published size/sha256 wrong: {p:?}"));
    }
    let m = loc
        .head("a.tar.zst")
        .map_err(|e| fail("head", e))?
        .ok_or("head of a published object is None")?;
    if m.size != small.len() as u64 {
        return Err(format!("head size {} != {}", m.size, small.len()));
    }
    let listed = loc.list().map_err(|e| fail("list", e))?;
    if listed.len() != 1 || listed[0].name != "a.tar.zst" || listed[0].size != small.len() as u64 {
        return Err(format!("list after one publish: {listed:?}"));
    }
    // Ranges: inside, across the end, past the end.
    let r = loc
        .read_range("a.tar.zst", 10, 20)
        .map_err(|e| fail("read_range", e))?;
    if r != small[10..30] {
        return Err("read_range returned other bytes".into());
    }
    let r = loc
        .read_range("a.tar.zst", small.len() as u64 - 5, 100)
        .map_err(|e| fail("read_range at the end", e))?;
    if r != small[small.len() - 5..] {
        return Err("read_range across the end is not the tail".into());
    }
    let r = loc
        .read_range("a.tar.zst", small.len() as u64 + 10, 100)
        .map_err(|e| fail("read_range past the end", e))?;
    if !r.is_empty() {
        return Err("read_range past the end is not empty".into());
    }
    let mut all = Vec::new();
    loc.read_stream("a.tar.zst")
        .map_err(|e| fail("read_stream", e))?
        .read_to_end(&mut all)
        .map_err(|e| format!("read_stream: {e}"))?;
    if all != small {
        return Err("read_stream returned other bytes".into());
    }
    // An empty object reads back empty (a range read of it has no byte 0).
    let w = loc
        .create("e.tar.zst", &CreateOptions::default())
        .map_err(|e| fail("create (empty)", e))?;
    w.finish(None).map_err(|e| fail("finish (empty)", e))?;
    let mut all = Vec::new();
    loc.read_stream("e.tar.zst")
        .map_err(|e| fail("read_stream (empty)", e))?
        .read_to_end(&mut all)
        .map_err(|e| format!("read_stream (empty): {e}"))?;
    if !all.is_empty() {
        return Err(format!("an empty object read back {} bytes", all.len()));
    }
    loc.delete("e.tar.zst").map_err(|e| fail("delete", e))?;

    // Never replaced: refused at create, and at finish when taken meanwhile.
    match loc.create("a.tar.zst", &CreateOptions::default()) {
        Err(Error::WouldOverwrite { .. }) => {}
        Err(e) => return Err(format!("create over an existing object: {e}")),
        Ok(_) => return Err("create over an existing object was accepted".into()),
    }
    let mut w1 = loc
        .create("b.tar.zst", &CreateOptions::default())
        .map_err(|e| fail("create", e))?;
    let mut w2 = loc
        .create("b.tar.zst", &CreateOptions::default())
        .map_err(|e| fail("create a second writer", e))?;
    w1.write_all(b"first").map_err(|e| format!("write: {e}"))?;
    w2.write_all(b"second").map_err(|e| format!("write: {e}"))?;
    w1.finish(None).map_err(|e| fail("finish the first", e))?;
    match w2.finish(None) {
        Err(Error::WouldOverwrite { .. }) => {}
        other => return Err(format!("a second publish of one name: {other:?}")),
    }
    if loc.read_range("b.tar.zst", 0, 100).map_err(|e| fail("read", e))? != b"first" {
        return Err("the first object was replaced".into());
    }
    // rename_if_taken picks the next free name.
    let opts = CreateOptions {
        rename_if_taken: true,
        ..Default::default()
    };
    let mut w = loc
        .create("b.tar.zst", &opts)
        .map_err(|e| fail("create (rename)", e))?;
    w.write_all(b"third").map_err(|e| format!("write: {e}"))?;
    let p = w.finish(None).map_err(|e| fail("finish (rename)", e))?;
    if p.name != "b-2.tar.zst" {
        return Err(format!("rename_if_taken gave {:?}", p.name));
    }

    // A large object (several parts for object stores) whose head is rewritten at the end.
    let big: Vec<u8> = (0..(21u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let opts = CreateOptions {
        head_reserve: 4096,
        ..Default::default()
    };
    let mut w = loc
        .create("c.tar.zst", &opts)
        .map_err(|e| fail("create (head)", e))?;
    w.write_all(&[0u8; 4096]).map_err(|e| format!("write: {e}"))?;
    for chunk in big[4096..].chunks(1 << 16) {
        w.write_all(chunk).map_err(|e| format!("write: {e}"))?;
    }
    let p = w
        .finish(Some(&big[..4096]))
        .map_err(|e| fail("finish (head)", e))?;
    let want = crate::model::hex(&<sha2::Sha256 as sha2::Digest>::digest(&big));
    if p.size != big.len() as u64 || p.sha256 != want {
        return Err(format!(
            "large object published as {} bytes, {}",
            p.size, p.sha256
        ));
    }
    let mut all = Vec::new();
    loc.read_stream("c.tar.zst")
        .map_err(|e| fail("read_stream", e))?
        .read_to_end(&mut all)
        .map_err(|e| format!("read_stream: {e}"))?;
    if all != big {
        return Err("the large object reads back different".into());
    }

    // An abandoned writer leaves nothing.
    let mut w = loc
        .create("d.tar.zst", &CreateOptions::default())
        .map_err(|e| fail("create", e))?;
    w.write_all(&big).map_err(|e| format!("write: {e}"))?;
    drop(w);
    if loc.head("d.tar.zst").map_err(|e| fail("head", e))?.is_some() {
        return Err("a dropped writer published its object".into());
    }

    // Delete removes one object and nothing else.
    loc.delete("a.tar.zst").map_err(|e| fail("delete", e))?;
    let names: Vec<String> = loc
        .list()
        .map_err(|e| fail("list", e))?
        .into_iter()
        .map(|m| m.name)
        .collect();
    if names != ["b-2.tar.zst", "b.tar.zst", "c.tar.zst"] {
        return Err(format!("after delete the location lists {names:?}"));
    }
    for n in names {
        loc.delete(&n).map_err(|e| fail("delete", e))?;
    }
    if !loc.list().map_err(|e| fail("list", e))?.is_empty() {
        return Err("objects remain after deleting all".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_directory_passes() {
        let d = tempfile::tempdir().unwrap();
        let loc = super::super::local::LocalDir::new(d.path()).unwrap();
        super::check(&loc).unwrap();
    }
}
