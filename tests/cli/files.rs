//! `backup --include DIR` and `restore --files-to OUT`: the files an application keeps beside
//! its database, round trips, refusals, hostile archives built by hand, verify/list/show.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::util::{make_db, Env};

const MTIME: i64 = 1_700_000_000;

fn set_mtime(p: &Path, secs: i64) {
    let f = std::fs::File::open(p).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64))
        .unwrap();
}

/// An app directory: `app.db` and `uploads/` with nested dirs, unicode and spaces, an empty
/// file, an empty directory, a relative symlink inside, modes and mtimes to restore.
fn app(env: &Env) -> (PathBuf, PathBuf) {
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let up = env.path("uploads");
    std::fs::create_dir_all(up.join("2026/12/année été")).unwrap();
    std::fs::create_dir_all(up.join("empty dir")).unwrap();
    std::fs::write(up.join("a.txt"), b"hello").unwrap();
    std::fs::write(up.join("2026/12/année été/photo 1 ✓.jpg"), vec![7u8; 70_000]).unwrap();
    std::fs::write(up.join("empty"), b"").unwrap();
    std::fs::write(up.join("secret"), b"s3cr3t").unwrap();
    std::fs::set_permissions(up.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(up.join("run.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(up.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("2026/12", up.join("latest")).unwrap();
    let long = "n".repeat(120);
    std::fs::write(up.join(&long), b"long name").unwrap();
    for (i, p) in ["a.txt", "empty", "secret", "run.sh", &long].iter().enumerate() {
        set_mtime(&up.join(p), MTIME + i as i64);
    }
    set_mtime(&up.join("empty dir"), MTIME - 10);
    (db, up)
}

/// Every entry under `root` (relative path -> kind, content or target, mode, mtime).
fn tree(root: &Path) -> Vec<(String, String, u32, i64)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32, i64)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap().to_string_lossy().into_owned();
                out.push((rel, format!("link {t}"), 0, 0));
            } else if m.is_dir() {
                out.push((rel, "dir".into(), m.mode() & 0o777, m.mtime()));
                walk(root, &p, out);
            } else {
                let sum = litevault::format::files::sha256_hex(&std::fs::read(&p).unwrap());
                out.push((rel, sum, m.mode() & 0o777, m.mtime()));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn no_temp_files(dir: &Path) {
    if !dir.exists() {
        return;
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".litevault-"),
            "temp file left: {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            no_temp_files(&e.path());
        }
    }
}

#[test]
fn files_round_trip_with_modes_mtimes_symlinks_and_every_codec() {
    let env = Env::new();
    let (db, up) = app(&env);
    std::fs::create_dir(env.path("exports")).unwrap();
    std::fs::write(env.path("exports/report.csv"), b"a,b\n").unwrap();
    let want = tree(&up);
    for codec in ["zstd", "gzip", "none"] {
        let r = env
            .run(&[
                "backup",
                "app.db",
                "--include",
                "uploads",
                "--include",
                "./exports/",
                "--compression",
                codec,
                "--json",
            ])
            .ok();
        let j = r.json();
        assert_eq!(j["files"], 14, "{j}");
        assert_eq!(j["files_bytes"], 70_000 + 5 + 6 + 10 + 9 + 4, "{j}");
        let archive = j["archive"].as_str().unwrap().to_string();
        let out = env.path(&format!("out-{codec}"));
        let r = env
            .run(&[
                "restore",
                &archive,
                &format!("new-{codec}.db"),
                "--files-to",
                out.to_str().unwrap(),
                "--json",
            ])
            .ok();
        assert_eq!(r.json()["files_restored"], 14, "{}", r.stdout);
        assert_eq!(tree(&out.join("uploads")), want, "{codec}");
        assert_eq!(std::fs::read(out.join("exports/report.csv")).unwrap(), b"a,b\n");
        assert_eq!(
            std::fs::read_link(out.join("uploads/latest")).unwrap(),
            Path::new("2026/12")
        );
        no_temp_files(&out);
        env.run(&["verify", &archive]).ok();
    }
    let _ = db;
}

#[test]
fn standard_tools_extract_and_check_an_archive_with_files() {
    let has = |tool: &str| std::process::Command::new(tool).arg("--version").output().is_ok();
    if !has("tar") || !has("sha256sum") || !has("zstd") {
        eprintln!("skipped: tar, zstd or sha256sum missing");
        return;
    }
    let env = Env::new();
    let (db, _) = app(&env);
    let archive = env.backup(&db, &["--include", "uploads"]);
    let x = env.path("x");
    std::fs::create_dir(&x).unwrap();
    let tar = std::process::Command::new("tar")
        .args([
            "--zstd",
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            x.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&x)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sums.stdout);
    assert!(
        sums.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&sums.stderr)
    );
    assert!(
        text.contains("files/uploads/2026/12/année été/photo 1 ✓.jpg: OK"),
        "{text}"
    );
    assert!(
        text.contains(&format!("files/uploads/{}: OK", "n".repeat(120))),
        "{text}"
    );
    assert_eq!(std::fs::read(x.join("files/uploads/a.txt")).unwrap(), b"hello");
    assert!(x.join("files/uploads/empty dir").is_dir());
}

#[test]
fn backup_refuses_what_it_cannot_keep_and_writes_nothing() {
    let env = Env::new();
    let (_, up) = app(&env);
    type Case<'a> = (Box<dyn Fn() + 'a>, Vec<&'a str>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|| std::os::unix::fs::symlink("/etc/passwd", env.path("uploads/abs")).unwrap()),
            vec!["--include", "uploads"],
            4,
            "uploads/abs: a symlink that cannot be backed up: its target \"/etc/passwd\" is absolute",
        ),
        (
            Box::new(|| std::os::unix::fs::symlink("../../app.db", env.path("uploads/2026/esc")).unwrap()),
            vec!["--include", "uploads"],
            4,
            "leaves the included directory",
        ),
        (
            Box::new(|| {
                let p = std::ffi::CString::new(env.path("uploads/fifo").to_str().unwrap()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
            }),
            vec!["--include", "uploads"],
            4,
            "uploads/fifo: a fifo (named pipe) cannot be backed up",
        ),
        (
            Box::new(|| std::fs::create_dir_all(env.path("other/uploads")).unwrap()),
            vec!["--include", "uploads", "--include", "other/uploads"],
            2,
            "have the same name \"uploads\"",
        ),
        (Box::new(|| ()), vec!["--include", "app.db"], 2, "not a directory"),
        (
            Box::new(|| ()),
            vec!["--include", "uploads", "--format", "sql"],
            2,
            "not to SQL dumps",
        ),
    ];
    for (setup, args, code, message) in cases {
        setup();
        let mut a = vec!["backup", "app.db"];
        a.extend(args);
        let r = env.run(&a).code(code);
        assert!(r.stderr.contains(message), "{a:?}: {}", r.stderr);
        assert!(env.backup_files().is_empty(), "{:?}", env.backup_files());
        for p in ["uploads/abs", "uploads/2026/esc", "uploads/fifo"] {
            let _ = std::fs::remove_file(env.path(p));
        }
    }
    // A symlink that stays inside is kept; hard links are stored as files.
    std::fs::hard_link(up.join("a.txt"), up.join("hard")).unwrap();
    let archive = env.backup(&env.path("app.db"), &["--include", "uploads"]);
    let show = env
        .run(&["show", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let files = show["files"].as_array().unwrap();
    let hard = files.iter().find(|f| f["path"] == "uploads/hard").unwrap();
    assert_eq!(hard["kind"], "file");
    let link = files.iter().find(|f| f["path"] == "uploads/latest").unwrap();
    assert_eq!(
        (link["kind"].as_str(), link["target"].as_str()),
        (Some("symlink"), Some("2026/12"))
    );
}

#[test]
fn restore_refuses_existing_files_without_overwrite_and_replaces_them_with_it() {
    let env = Env::new();
    let (db, _) = app(&env);
    let archive = env.backup(&db, &["--include", "uploads"]);
    let a = archive.to_str().unwrap();
    let out = env.path("srv");
    std::fs::create_dir_all(out.join("uploads")).unwrap();
    std::fs::write(out.join("uploads/a.txt"), b"old").unwrap();
    // Refused by the plan: nothing written, the database included.
    let r = env.run(&["restore", a, "new.db", "--files-to", "srv"]).code(4);
    assert!(
        r.stderr.contains("srv/uploads/a.txt: already exists"),
        "{}",
        r.stderr
    );
    assert!(!env.path("new.db").exists());
    assert_eq!(tree(&out).len(), 2, "{:?}", tree(&out));
    // The dry run shows the files and what they replace, and writes nothing either.
    let r = env
        .run(&[
            "restore",
            a,
            "new.db",
            "--files-to",
            "srv",
            "--overwrite",
            "--dry-run",
        ])
        .ok();
    assert!(r.stdout.contains("files: 12 entries"), "{}", r.stdout);
    assert!(
        r.stdout.contains("uploads/a.txt (replaces the existing one)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("uploads/2026/12/année été/photo 1 ✓.jpg"),
        "{}",
        r.stdout
    );
    let plan = env
        .run(&[
            "restore",
            a,
            "new.db",
            "--files-to",
            "srv",
            "--overwrite",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(plan["files"]["replaces"], 1, "{plan}");
    assert!(!env.path("new.db").exists());
    assert_eq!(std::fs::read(out.join("uploads/a.txt")).unwrap(), b"old");
    // With --overwrite: replaced.
    env.run(&["restore", a, "new.db", "--files-to", "srv", "--overwrite"])
        .ok();
    assert_eq!(std::fs::read(out.join("uploads/a.txt")).unwrap(), b"hello");
    assert_eq!(tree(&out.join("uploads")), tree(&env.path("uploads")));
    no_temp_files(&out);
}

#[test]
fn restore_never_writes_through_a_symlink_under_the_target() {
    let env = Env::new();
    let (db, _) = app(&env);
    let archive = env.backup(&db, &["--include", "uploads"]);
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(env.path("srv")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, env.path("srv/uploads")).unwrap();
    let r = env
        .run(&[
            "restore",
            archive.to_str().unwrap(),
            "new.db",
            "--files-to",
            "srv",
            "--overwrite",
        ])
        .code(4);
    assert!(
        r.stderr.contains("restore never writes through a symlink"),
        "{}",
        r.stderr
    );
    assert!(!env.path("new.db").exists());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn restore_without_files_to_says_what_it_left_and_files_to_needs_files() {
    let env = Env::new();
    let (db, _) = app(&env);
    let with = env.backup(&db, &["--include", "uploads"]);
    let r = env
        .run(&["restore", with.to_str().unwrap(), "a.db", "--json"])
        .ok()
        .json();
    assert_eq!(r["plan"]["files_not_restored"], 12, "{r}");
    let w = r["plan"]["warnings"].to_string();
    assert!(w.contains("not restored without --files-to"), "{w}");
    let without = env.backup(&db, &[]);
    let r = env
        .run(&["restore", without.to_str().unwrap(), "b.db", "--files-to", "out"])
        .code(2);
    assert!(r.stderr.contains("holds no files"), "{}", r.stderr);
    assert!(!env.path("b.db").exists());
}

#[test]
fn list_and_show_count_the_files() {
    let env = Env::new();
    let (db, _) = app(&env);
    let archive = env.backup(&db, &["--include", "uploads"]);
    let l = env.run(&["list", "--json"]).ok().json();
    assert_eq!(l[0]["files"], 12, "{l}");
    assert_eq!(l[0]["files_bytes"], 70_000 + 5 + 6 + 10 + 9, "{l}");
    let l = env.run(&["list"]).ok();
    assert!(
        l.stdout.contains("12 files (68.4 KiB)") || l.stdout.contains(", 12 files ("),
        "{}",
        l.stdout
    );
    let s = env
        .run(&["show", archive.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(s["files_summary"]["count"], 12, "{s}");
    let s = env.run(&["show", archive.to_str().unwrap()]).ok();
    assert!(s.stdout.contains("12 files and directories"), "{}", s.stdout);
}

#[test]
fn verify_and_restore_catch_a_flipped_byte_in_a_file() {
    let env = Env::new();
    let (db, up) = app(&env);
    std::fs::write(up.join("needle"), b"NEEDLE-0123456789").unwrap();
    let archive = env.backup(&db, &["--include", "uploads", "--compression", "none"]);
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.windows(17).position(|w| w == b"NEEDLE-0123456789").unwrap();
    bytes[at + 3] ^= 1;
    let bad = env.path("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let r = env.run(&["verify", "bad.tar", "--json"]).code(3);
    let j = r.json();
    let check = crate::util::check(&j, "checksum files");
    assert_eq!(check["status"], "fail", "{j}");
    assert!(
        check["detail"].as_str().unwrap().contains("files/uploads/needle"),
        "{j}"
    );
    let r = env
        .run(&["restore", "bad.tar", "new.db", "--files-to", "out"])
        .code(3);
    assert!(r.stderr.contains("files/uploads/needle"), "{}", r.stderr);
    assert!(!env.path("new.db").exists());
    assert!(!env.path("out").exists(), "{:?}", tree(&env.path("out")));
    no_temp_files(env.dir.path());
}

#[test]
fn a_300_mb_file_round_trips() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, "CREATE TABLE t(x);");
    std::fs::create_dir(env.path("big")).unwrap();
    let big = env.path("big/blob.bin");
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::File::create(&big).unwrap();
        // Mostly a hole, with data at a few places so that the copy is not all zeros.
        for i in 0..30u64 {
            f.seek(std::io::SeekFrom::Start(i * 10_000_000)).unwrap();
            f.write_all(&i.to_le_bytes().repeat(512)).unwrap();
        }
        f.set_len(300_000_000).unwrap();
    }
    let want = litevault::format::files::sha256_hex(&std::fs::read(&big).unwrap());
    let archive = env.backup(&db, &["--include", "big"]);
    env.run(&[
        "restore",
        archive.to_str().unwrap(),
        "new.db",
        "--files-to",
        "out",
    ])
    .ok();
    let got = std::fs::read(env.path("out/big/blob.bin")).unwrap();
    assert_eq!(got.len(), 300_000_000);
    assert_eq!(litevault::format::files::sha256_hex(&got), want);
}

#[test]
fn a_file_growing_during_the_backup_is_stored_as_one_state_or_fails_named() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, "CREATE TABLE t(x);");
    std::fs::create_dir(env.path("logs")).unwrap();
    let log = env.path("logs/app.log");
    std::fs::write(&log, "start\n".repeat(2_000_000)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writeln!(f, "line {n}").unwrap();
                n += 1;
                if n.is_multiple_of(64) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
    };
    let r = env.run(&["backup", "app.db", "--include", "logs", "--json"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    if r.code != 0 {
        assert!(
            r.stderr.contains("logs/app.log") && r.stderr.contains("changed while it was read"),
            "{}",
            r.stderr
        );
        assert!(env.backup_files().is_empty());
        return;
    }
    let archive = r.json()["archive"].as_str().unwrap().to_string();
    env.run(&["restore", &archive, "new.db", "--files-to", "out"])
        .ok();
    let stored = std::fs::read(env.path("out/logs/app.log")).unwrap();
    let now = std::fs::read(&log).unwrap();
    // One state: a prefix of the file as it ended, cut at a line end.
    assert!(
        now.starts_with(&stored) && stored.ends_with(b"\n"),
        "{} of {}",
        stored.len(),
        now.len()
    );
}

#[test]
fn incremental_archives_carry_their_own_files() {
    let env = Env::new();
    let (db, up) = app(&env);
    let first = env.backup(&db, &["--include", "uploads", "--incremental"]);
    std::fs::write(up.join("a.txt"), b"second").unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO t VALUES (2);")
        .unwrap();
    let second = env
        .run(&[
            "backup",
            "app.db",
            "--include",
            "uploads",
            "--incremental",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(second["kind"], "incremental", "{second}");
    let second = second["archive"].as_str().unwrap().to_string();
    env.run(&["restore", &second, "new.db", "--files-to", "out"]).ok();
    assert_eq!(std::fs::read(env.path("out/uploads/a.txt")).unwrap(), b"second");
    assert_eq!(
        crate::util::query_i64(&env.path("new.db"), "SELECT count(*) FROM t"),
        2
    );
    env.run(&[
        "restore",
        first.to_str().unwrap(),
        "old.db",
        "--files-to",
        "out-first",
    ])
    .ok();
    assert_eq!(
        std::fs::read(env.path("out-first/uploads/a.txt")).unwrap(),
        b"hello"
    );
}

/// A raw tar header block (GNU magic), with `name` and `link` written as given (no checks).
fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn entry(out: &mut Vec<u8>, name: &[u8], kind: u8, data: &[u8], link: &[u8]) {
    out.extend(header(name, kind, data.len() as u64, link));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// An uncompressed archive of `db` with the files `files` (name, tar type, content, link) and
/// the manifest's `files` list replaced by `listed`; SHA256SUMS lists every regular file.
/// A raw entry: name, tar type byte, content, link target.
type Raw<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

fn hostile(env: &Env, listed: serde_json::Value, files: &[Raw]) -> PathBuf {
    let db = env.path("app.db");
    if !db.exists() {
        make_db(&db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);");
    }
    let plain = env.backup(&db, &["--compression", "none"]);
    let mut ar = tar::Archive::new(std::fs::File::open(&plain).unwrap());
    let mut manifest: serde_json::Value = serde_json::Value::Null;
    let mut database = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        match e.path().unwrap().to_str().unwrap() {
            "manifest.json" => manifest = serde_json::from_slice(&data).unwrap(),
            "database.sqlite" => database = data,
            _ => {}
        }
    }
    std::fs::remove_file(&plain).unwrap();
    manifest["files"] = listed;
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    let sum = litevault::format::files::sha256_hex;
    let mut sums = format!(
        "{}  manifest.json\n{}  database.sqlite\n",
        sum(&manifest),
        sum(&database)
    );
    let mut out = Vec::new();
    entry(&mut out, b"manifest.json", b'0', &manifest, b"");
    entry(&mut out, b"database.sqlite", b'0', &database, b"");
    for (name, kind, data, link) in files {
        entry(&mut out, name, *kind, data, link);
        if *kind == b'0' {
            sums += &format!("{}  {}\n", sum(data), String::from_utf8_lossy(name));
        }
    }
    entry(&mut out, b"SHA256SUMS", b'0', sums.as_bytes(), b"");
    out.extend([0u8; 1024]);
    let path = env.path("hostile.tar");
    std::fs::write(&path, out).unwrap();
    path
}

fn file(path: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({"path": path, "kind": "file", "size": data.len(), "mode": 420, "mtime": 0,
        "sha256": litevault::format::files::sha256_hex(data)})
}

fn dir(path: &str) -> serde_json::Value {
    serde_json::json!({"path": path, "kind": "dir", "size": 0, "mode": 493, "mtime": 0})
}

fn link(path: &str, target: &str) -> serde_json::Value {
    serde_json::json!({"path": path, "kind": "symlink", "size": 0, "mode": 511, "mtime": 0, "target": target})
}

#[test]
fn hostile_archives_are_refused_with_nothing_written() {
    use serde_json::json;
    let x: &[u8] = b"pwned";
    let cases: Vec<(&str, serde_json::Value, Vec<Raw>, &str)> = vec![
        (
            "dot-dot in the manifest and the entry",
            json!([dir("up"), file("up/../../x", x)]),
            vec![(b"files/up", b'5', b"", b""), (b"files/up/../../x", b'0', x, b"")],
            "component",
        ),
        (
            "an absolute entry name",
            json!([dir("up"), file("up/x", x)]),
            vec![(b"files/up", b'5', b"", b""), (b"/tmp/x", b'0', x, b"")],
            "expected entry \"files/up/x\", found \"/tmp/x\"",
        ),
        (
            "an absolute path in the manifest",
            json!([dir("/up"), file("/up/x", x)]),
            vec![(b"files//up", b'5', b"", b""), (b"files//up/x", b'0', x, b"")],
            "absolute path",
        ),
        (
            "a symlink leaving the tree",
            json!([dir("up"), link("up/l", "../../../etc")]),
            vec![
                (b"files/up", b'5', b"", b""),
                (b"files/up/l", b'2', b"", b"../../../etc"),
            ],
            "leaves the included directory",
        ),
        (
            "a file under a symlink entry",
            json!([dir("up"), link("up/l", "."), file("up/l/x", x)]),
            vec![
                (b"files/up", b'5', b"", b""),
                (b"files/up/l", b'2', b"", b"."),
                (b"files/up/l/x", b'0', x, b""),
            ],
            "not under a directory listed before it",
        ),
        (
            "an entry the manifest does not list",
            json!([dir("up"), file("up/x", x)]),
            vec![
                (b"files/up", b'5', b"", b""),
                (b"files/up/x", b'0', x, b""),
                (b"files/up/extra", b'0', x, b""),
            ],
            "found \"files/up/extra\"",
        ),
        (
            "a listed entry missing",
            json!([dir("up"), file("up/x", x), file("up/y", x)]),
            vec![(b"files/up", b'5', b"", b""), (b"files/up/x", b'0', x, b"")],
            "expected entry \"files/up/y\", found \"SHA256SUMS\"",
        ),
        (
            "an entry larger than the manifest says",
            json!([dir("up"), file("up/x", b"small")]),
            vec![
                (b"files/up", b'5', b"", b""),
                (b"files/up/x", b'0', &[b'A'; 100_000], b""),
            ],
            "refused: larger",
        ),
        (
            "a symlink entry where the manifest has a file",
            json!([dir("up"), file("up/x", x)]),
            vec![
                (b"files/up", b'5', b"", b""),
                (b"files/up/x", b'2', b"", b"/etc/passwd"),
            ],
            "the manifest says File",
        ),
    ];
    for (what, listed, entries, message) in cases {
        let env = Env::new();
        let path = hostile(&env, listed, &entries);
        let r = env
            .run(&["restore", path.to_str().unwrap(), "new.db", "--files-to", "out"])
            .code(3);
        assert!(r.stderr.contains(message), "{what}: {}", r.stderr);
        assert!(!env.path("new.db").exists(), "{what}");
        assert!(!env.path("out").exists(), "{what}: {:?}", tree(&env.path("out")));
        assert!(!env.path("x").exists() && !Path::new("/tmp/x").exists(), "{what}");
        no_temp_files(env.dir.path());
        env.run(&["verify", path.to_str().unwrap()]).code(3);
    }
    // The same construction with an honest manifest restores (the cases fail for their reason).
    let env = Env::new();
    let path = hostile(
        &env,
        json!([dir("up"), file("up/x", x), link("up/l", "x")]),
        &[
            (b"files/up", b'5', b"", b""),
            (b"files/up/x", b'0', x, b""),
            (b"files/up/l", b'2', b"", b"x"),
        ],
    );
    env.run(&["restore", path.to_str().unwrap(), "new.db", "--files-to", "out"])
        .ok();
    assert_eq!(std::fs::read(env.path("out/up/l")).unwrap(), x);
}
