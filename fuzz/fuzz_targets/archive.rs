//! The archive reader: a whole archive file (zstd, gzip or plain tar) through what `show`,
//! `list` and `verify` read first: the manifest at its head, then every entry, the checksums
//! and the end of the compressed stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::format::{archive, dump};
use litevault::NoProgress;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write_input("input.tar.zst", data);
    let head = archive::read_manifest_and_sha256(&path, &common::ids());
    let _ = dump::read_any_manifest(&path, &common::ids());
    if let Ok((_, reader)) = archive::open_reader(&path, &common::ids()) {
        drop(reader);
    }
    let whole = archive::read_archive(&path, &mut std::io::sink(), &NoProgress, &common::ids());
    if let Ok(c) = &whole {
        let _ = c.checksum_checks();
        let _ = c.ensure_checksums(&path);
        // Whoever reads the whole archive reads the same manifest as the head reader.
        let (m, sum) = head
            .as_ref()
            .expect("read_archive succeeded where read_manifest failed");
        assert_eq!(&c.manifest, m);
        assert_eq!(&c.computed[0].1, sum);
    }
});
