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

mod common;
mod read;
mod write;

pub use common::*;
pub use read::*;
pub use write::*;

/// The default file name of an archive of the database named `name` in its location (see
/// [`crate::location::name_of`]): `<name>[-tag]-<YYYYMMDDTHHMMSSZ><ext>`.
pub fn default_file_name(name: &str, tag: Option<&str>, stamp: &str, compression: Compression) -> String {
    let tag = tag.map(|t| format!("-{t}")).unwrap_or_default();
    format!("{name}{tag}-{stamp}{}", compression.extension())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    use sha2::{Digest, Sha256};

    use crate::error::Error;

    use crate::location::NewObject;
    use crate::model::hex;

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
