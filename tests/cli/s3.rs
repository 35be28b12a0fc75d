//! Locations on a real S3 server (SeaweedFS on loopback, see `s3server`): the conformance suite,
//! round trips of every command, create-only publishing, and faults (kill -9 and SIGTERM
//! mid-upload, the server stopped mid-upload, resets and 503s through a proxy, wrong
//! credentials, a missing bucket).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::faultproxy::FaultProxy;
use crate::s3server::S3Server;
use crate::util::*;

fn run_with(env: &Env, srv: &S3Server, endpoint: Option<&str>, args: &[&str]) -> Run {
    let mut c = env.command(args);
    srv.apply_env(&mut c);
    if let Some(e) = endpoint {
        c.env("AWS_ENDPOINT_URL", e);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(env: &Env, srv: &S3Server, args: &[&str]) -> Run {
    run_with(env, srv, None, args)
}

fn settings(srv: &S3Server) -> litevault::location::s3::S3Settings {
    litevault::location::s3::S3Settings {
        endpoint_url: Some(srv.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: srv.access_key.clone(),
        secret_access_key: srv.secret_key.clone(),
    }
}

fn sha256_file(p: &Path) -> String {
    litevault::model::hex(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// A WAL database of about `mb` MiB (half random, half zeros: the archive is about half).
fn big_wal_db(env: &Env, mb: usize) -> PathBuf {
    let db = env.path("big.db");
    make_sized_db(&db, mb);
    make_db(&db, "PRAGMA journal_mode=WAL;");
    db
}

#[test]
fn s3_location_passes_the_conformance_suite() {
    let srv = S3Server::start();
    let loc =
        litevault::location::s3::S3Location::open_with(&srv.url("conformance"), &settings(&srv)).unwrap();
    litevault::location::conformance::check(&loc).unwrap();
    // The abandoned writer's multipart upload was aborted, not left behind.
    assert_eq!(srv.pending_uploads(), 0, "{:?}", srv.pending_upload_keys());
}

#[test]
fn backup_list_show_verify_restore_merge_round_trip() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let url = srv.url("prod/app");
    let r = run(
        &env,
        &srv,
        &["backup", db.to_str().unwrap(), "--dir", &url, "--json"],
    )
    .ok();
    let archive = r.json()["archive"].as_str().unwrap().to_string();
    assert!(
        archive.starts_with(&format!("{url}/Chinook_Sqlite-")),
        "{archive}"
    );
    assert!(archive.ends_with(".tar.zst"));
    let key = archive.strip_prefix(&format!("s3://{}/", srv.bucket)).unwrap();
    assert_eq!(srv.object_keys("prod/"), [key]);
    assert_eq!(srv.pending_uploads(), 0);
    assert!(
        env.backup_files().is_empty(),
        "nothing local: {:?}",
        env.backup_files()
    );

    // A second backup in the same second gets the next free name, never the same object.
    let r2 = run(
        &env,
        &srv,
        &["backup", db.to_str().unwrap(), "--dir", &url, "--json"],
    )
    .ok();
    let archive2 = r2.json()["archive"].as_str().unwrap().to_string();
    assert_ne!(archive, archive2);

    let l = run(&env, &srv, &["list", "--dir", &url, "--json"]).ok().json();
    let items = l.as_array().unwrap();
    assert_eq!(items.len(), 2, "{l}");
    for it in items {
        assert_eq!(it["manifest"]["kind"], "full", "{it}");
        assert!(it["error"].is_null());
    }
    let show = run(&env, &srv, &["show", &archive, "--json"]).ok().json();
    assert_eq!(show["format"], "litevault/2");
    let v = run(&env, &srv, &["verify", &archive, "--json"]).ok().json();
    assert_eq!(v["ok"], true, "{v}");

    let restored = env.path("restored.db");
    run(&env, &srv, &["restore", &archive, restored.to_str().unwrap()]).ok();
    assert_eq!(content_hash(&restored), content_hash(&db));

    // restore --latest: the newest backup of the target's name there.
    let latest_target = env.path("Chinook_Sqlite.db");
    let r = run(
        &env,
        &srv,
        &[
            "restore",
            "--latest",
            "--dir",
            &url,
            latest_target.to_str().unwrap(),
            "--json",
        ],
    )
    .ok()
    .json();
    // The second one is the newer (a later stamp, or the same stamp with "-2").
    assert_eq!(r["plan"]["archive"], archive2.as_str(), "{r}");
    assert_eq!(content_hash(&latest_target), content_hash(&db));
    // Nothing of that name there: a clear not-found.
    let none = run(
        &env,
        &srv,
        &["restore", "--latest", "--dir", &url, "--name", "other", "x.db"],
    )
    .code(1);
    assert!(none.stderr.contains("other-<stamp>"), "{}", none.stderr);

    // Overwriting a database keeps its safety archive in the bucket too.
    let r = run(
        &env,
        &srv,
        &[
            "restore",
            &archive,
            restored.to_str().unwrap(),
            "--overwrite",
            "--safety-dir",
            &srv.url("safety"),
            "--json",
        ],
    )
    .ok()
    .json();
    let safety = r["safety_archive"].as_str().unwrap();
    assert!(
        safety.starts_with(&srv.url("safety/restored-pre-restore-")),
        "{safety}"
    );
    assert_eq!(srv.object_keys("safety/").len(), 1);

    // Merge straight from the bucket: a self-merge adds nothing.
    let m = run(
        &env,
        &srv,
        &[
            "merge",
            &archive,
            db.to_str().unwrap(),
            "--json",
            "--no-safety-copy",
        ],
    )
    .ok()
    .json();
    let inserted: u64 = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["inserted"].as_u64().unwrap())
        .sum();
    assert_eq!(inserted, 0, "{m}");
    assert!(m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["incoming"].as_u64().unwrap() > 0));

    // SQL dumps, and LITEVAULT_DIR as a bucket.
    let mut c = env.command(&["backup", db.to_str().unwrap(), "--format", "sql", "--json"]);
    srv.apply_env(&mut c);
    c.env("LITEVAULT_DIR", srv.url("dumps"));
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dump = dump["archive"].as_str().unwrap();
    assert!(dump.starts_with(&srv.url("dumps/Chinook_Sqlite-")) && dump.ends_with(".sql.zst"));
    let from_dump = env.path("from-dump.db");
    run(&env, &srv, &["restore", dump, from_dump.to_str().unwrap()]).ok();
    assert_eq!(content_hash(&from_dump), content_hash(&db));
}

#[test]
fn a_large_backup_streams_in_parts_and_its_checksum_is_the_objects() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = big_wal_db(&env, 40);
    let url = srv.url("big");
    let r = run(
        &env,
        &srv,
        &["backup", db.to_str().unwrap(), "--dir", &url, "--json"],
    )
    .ok()
    .json();
    assert_eq!(r["streamed"], true, "{r}");
    let archive = r["archive"].as_str().unwrap();
    // Pull it down (copy reads it back and checks it) and compare with the report.
    let local = env.path("pulled");
    run(&env, &srv, &["copy", archive, local.to_str().unwrap()]).ok();
    let file = local.join(Path::new(archive).file_name().unwrap());
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        r["archive_size"].as_u64().unwrap()
    );
    assert_eq!(sha256_file(&file), r["archive_sha256"].as_str().unwrap());
    // The standard tools read it: the manifest is the first entry.
    let out = std::process::Command::new("tar")
        .args(["--zstd", "-tf", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        ["manifest.json", "database.sqlite", "pages.hashes", "SHA256SUMS"]
    );
    let v = run(&env, &srv, &["verify", archive, "--quick", "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn an_object_is_never_replaced() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let obj = srv.url("prod/pre-migration.tar.zst");
    run(&env, &srv, &["backup", db.to_str().unwrap(), "-o", &obj]).ok();
    let key = obj
        .strip_prefix(&format!("s3://{}/", srv.bucket))
        .unwrap()
        .to_string();
    assert_eq!(srv.object_keys("prod/"), [key]);
    let before = run(&env, &srv, &["show", &obj, "--json"]).ok().json();
    make_db(&db, "CREATE TABLE later(x); INSERT INTO later VALUES (1);");
    let r = run(&env, &srv, &["backup", db.to_str().unwrap(), "-o", &obj]).code(4);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    let r = run(
        &env,
        &srv,
        &["backup", db.to_str().unwrap(), "-o", &obj, "--overwrite"],
    )
    .code(2);
    assert!(r.stderr.contains("never replaced"), "{}", r.stderr);
    let after = run(&env, &srv, &["show", &obj, "--json"]).ok().json();
    assert_eq!(before, after);
    assert_eq!(srv.pending_uploads(), 0);
}

#[test]
fn copy_pushes_and_pulls_and_never_overwrites() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/northwind_205fc66.db");
    let a = env.backup(&db, &[]);
    let b = env.backup(&db, &["--format", "sql"]);
    let url = srv.url("team");
    let r = run(
        &env,
        &srv,
        &["copy", a.to_str().unwrap(), b.to_str().unwrap(), &url, "--json"],
    )
    .ok()
    .json();
    assert_eq!(r["copied"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["copied"][0]["sha256"], sha256_file(&a).as_str());
    assert_eq!(srv.object_keys("team/").len(), 2);
    // Again: refused, nothing changed.
    let again = run(&env, &srv, &["copy", a.to_str().unwrap(), &url]).code(4);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    // Pull back: byte for byte the same file.
    let name = a.file_name().unwrap().to_str().unwrap();
    let down = env.path("down");
    run(
        &env,
        &srv,
        &["copy", &format!("{url}/{name}"), down.to_str().unwrap()],
    )
    .ok();
    assert_eq!(
        std::fs::read(down.join(name)).unwrap(),
        std::fs::read(&a).unwrap()
    );
    // Not a backup's name: refused before anything is copied.
    let other = env.path("notes.txt");
    std::fs::write(&other, "x").unwrap();
    run(&env, &srv, &["copy", other.to_str().unwrap(), &url]).code(2);
}

#[test]
fn prune_keeps_by_policy_per_name_and_leaves_other_objects() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let a = env.backup(&db, &[]);
    // The same archive under the names of backups taken on other days (and one of another name,
    // a safety archive, and one litevault did not name).
    let stage = env.path("stage");
    std::fs::create_dir(&stage).unwrap();
    let names = [
        "app-20261125T100000Z.tar.zst",
        "app-20261126T100000Z.tar.zst",
        "app-20261126T180000Z.tar.zst",
        "app-20261127T100000Z.tar.zst",
        "app-pre-restore-20261101T000000Z.tar.zst",
        "other-20261101T000000Z.tar.zst",
        "pre-migration.tar.zst",
    ];
    let mut paths = Vec::new();
    for n in names {
        std::fs::copy(&a, stage.join(n)).unwrap();
        paths.push(stage.join(n).to_string_lossy().into_owned());
    }
    let url = srv.url("p");
    let mut args: Vec<&str> = vec!["copy"];
    args.extend(paths.iter().map(String::as_str));
    args.push(&url);
    run(&env, &srv, &args).ok();

    let dry = run(
        &env,
        &srv,
        &[
            "prune",
            "--dir",
            &url,
            "--name",
            "app",
            "--keep-daily",
            "2",
            "--dry-run",
            "--json",
        ],
    )
    .ok()
    .json();
    let verdict = |name: &str| {
        dry["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no verdict for {name}: {dry}"))
    };
    assert_eq!(verdict("app-20261127T100000Z.tar.zst")["keep"], true);
    assert_eq!(verdict("app-20261126T180000Z.tar.zst")["keep"], true);
    assert_eq!(verdict("app-20261126T100000Z.tar.zst")["keep"], false);
    assert_eq!(verdict("app-20261125T100000Z.tar.zst")["keep"], false);
    assert_eq!(
        verdict("app-20261125T100000Z.tar.zst")["reasons"][0],
        "matches no keep policy"
    );
    // The safety archives of `app` are their own group: their newest is kept.
    assert_eq!(verdict("app-pre-restore-20261101T000000Z.tar.zst")["keep"], true);
    assert!(dry["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["group"] != "other"));
    assert_eq!(
        srv.object_keys("p/").len(),
        names.len(),
        "a dry run deletes nothing"
    );

    let r = run(
        &env,
        &srv,
        &["prune", "--dir", &url, "--keep-daily", "2", "--json"],
    )
    .ok()
    .json();
    assert_eq!(r["deleted"].as_array().unwrap().len(), 2, "{r}");
    let left: Vec<String> = srv.object_keys("p/");
    let want: Vec<String> = [
        "app-20261126T180000Z.tar.zst",
        "app-20261127T100000Z.tar.zst",
        "app-pre-restore-20261101T000000Z.tar.zst",
        "other-20261101T000000Z.tar.zst",
        "pre-migration.tar.zst",
    ]
    .iter()
    .map(|n| format!("p/{n}"))
    .collect();
    assert_eq!(left, want);
    // No policy: a usage error, nothing deleted.
    run(&env, &srv, &["prune", "--dir", &url]).code(2);
}

#[test]
fn wrong_secret_and_missing_bucket_are_one_clear_line() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let url = srv.url("x");
    let mut c = env.command(&["backup", db.to_str().unwrap(), "--dir", &url]);
    srv.apply_env(&mut c);
    c.env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-0123456789");
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains("hint: check AWS_ACCESS_KEY_ID"), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(!stderr.contains("wrong-secret-value") && !stderr.contains(&srv.secret_key));
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    let r = run(&env, &srv, &["list", "--dir", "s3://no-such-bucket-here/x"]).code(1);
    assert!(r.stderr.contains("bucket does not exist"), "{}", r.stderr);
    let r = run(&env, &srv, &["list", "--dir", "s3://A_B/x"]).code(2);
    assert!(r.stderr.contains("not a bucket name"), "{}", r.stderr);
}

/// Starts a backup of a big database to the bucket and returns once its multipart upload has
/// started on the server.
fn start_big_upload(env: &Env, srv: &S3Server, db: &Path, url: &str) -> std::process::Child {
    let mut c = env.command(&["backup", db.to_str().unwrap(), "--dir", url, "--json"]);
    srv.apply_env(&mut c);
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.pending_uploads() == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn kill_9_mid_upload_leaves_no_object_and_cleanup_aborts_the_upload() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = big_wal_db(&env, 160);
    let url = srv.url("k");
    let mut child = start_big_upload(&env, &srv, &db, &url);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(srv.object_keys("k/").is_empty(), "{:?}", srv.object_keys("k/"));
    assert_eq!(srv.pending_uploads(), 1);
    // What prune does for uploads older than a day, here for any age.
    let loc = litevault::location::s3::S3Location::open_with(&url, &settings(&srv)).unwrap();
    let cleaned = litevault::location::Location::clean_up(&loc, 0).unwrap();
    assert_eq!(cleaned.len(), 1, "{cleaned:?}");
    assert!(cleaned[0].contains("aborted an incomplete upload"), "{cleaned:?}");
    assert_eq!(srv.pending_uploads(), 0);
    // A young one is left to its (possibly live) writer.
    let mut child = start_big_upload(&env, &srv, &db, &url);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(litevault::location::Location::clean_up(&loc, 3600)
        .unwrap()
        .is_empty());
    assert_eq!(srv.pending_uploads(), 1);
}

#[test]
fn sigterm_mid_upload_aborts_it() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = big_wal_db(&env, 160);
    let url = srv.url("t");
    let child = start_big_upload(&env, &srv, &db, &url);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("aborted 1 upload"), "{stderr}");
    assert!(srv.object_keys("t/").is_empty());
    assert_eq!(srv.pending_uploads(), 0, "{:?}", srv.pending_upload_keys());
}

#[test]
fn server_stopped_mid_upload_fails_within_the_bound_and_the_next_backup_works() {
    let mut srv = S3Server::start();
    let env = Env::new();
    let db = big_wal_db(&env, 160);
    let url = srv.url("s");
    let child = start_big_upload(&env, &srv, &db, &url);
    let stopped = Instant::now();
    srv.stop();
    let out = child.wait_with_output().unwrap();
    let took = stopped.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(120), "took {took:?}");
    assert!(stderr.contains(&srv.endpoint), "names the endpoint: {stderr}");
    assert!(!stderr.contains("panicked"));
    srv.restart();
    assert!(srv.object_keys("s/").is_empty(), "{:?}", srv.object_keys("s/"));
    let small = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    run(&env, &srv, &["backup", small.to_str().unwrap(), "--dir", &url]).ok();
    assert_eq!(srv.object_keys("s/").len(), 1);
}

#[test]
fn resets_and_503s_are_retried() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = big_wal_db(&env, 30);
    let proxy = FaultProxy::start(srv.s3_addr());
    proxy.fail_next_503(2);
    proxy.reset_next(2);
    let url = srv.url("r");
    let r = run_with(
        &env,
        &srv,
        Some(&proxy.endpoint()),
        &["backup", db.to_str().unwrap(), "--dir", &url, "--json"],
    )
    .ok()
    .json();
    assert_eq!(proxy.injected(), 4, "every fault was met");
    let archive = r["archive"].as_str().unwrap();
    proxy.fail_next_503(1);
    proxy.reset_next(1);
    let v = run_with(
        &env,
        &srv,
        Some(&proxy.endpoint()),
        &["verify", archive, "--quick", "--json"],
    )
    .ok()
    .json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(proxy.injected(), 6);
    // A server that never answers: a clear failure naming the endpoint, within the bound.
    proxy.break_all();
    let started = Instant::now();
    let r = run_with(&env, &srv, Some(&proxy.endpoint()), &["list", "--dir", &url]).code(1);
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(r.stderr.contains(&proxy.endpoint()), "{}", r.stderr);
}

#[test]
fn a_large_object_is_read_in_ranges_at_once_resumed_where_cut_and_never_short() {
    use litevault::location::{CreateOptions, Location};
    use std::io::{Read, Write};
    let srv = S3Server::start();
    let url = srv.url("ranges");
    let direct = litevault::location::s3::S3Location::open_with(&url, &settings(&srv)).unwrap();
    // 50 MiB and a little: thirteen ranges of 4 MiB, the last one short.
    let big: Vec<u8> = (0..(50u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut w = direct.create("big.tar.zst", &CreateOptions::default()).unwrap();
    for chunk in big.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    w.finish(None).unwrap();

    let proxy = FaultProxy::start(srv.s3_addr());
    let mut via = settings(&srv);
    via.endpoint_url = Some(proxy.endpoint());
    let read_all = |what: &str| {
        // A client of its own each time: a fresh connection pool.
        let loc = litevault::location::s3::S3Location::open_with(&url, &via).unwrap();
        let mut all = Vec::new();
        loc.read_stream("big.tar.zst")
            .unwrap()
            .read_to_end(&mut all)
            .unwrap();
        assert!(
            all == big,
            "{what}: the object reads back different ({} bytes)",
            all.len()
        );
    };

    // A far server (20 MB/s a connection): the first answer takes 0.2 s to arrive, while the
    // next three ranges are asked for on connections of their own. One GET at a time would
    // use one connection and 2.6 s.
    proxy.throttle(20_000_000);
    let before = proxy.accepted();
    let started = Instant::now();
    read_all("throttled");
    let took = started.elapsed();
    assert!(
        proxy.accepted() - before >= 4,
        "ranges were not read at once: {} connection(s) in {took:?}",
        proxy.accepted() - before
    );
    proxy.throttle(0);

    // Answers cut off part-way (the head and 1 MiB arrived, then a reset): each range is
    // asked for again from the byte where it stopped, and the stream is still the object.
    proxy.cut_next_after(3, 1 << 20);
    read_all("answers cut");
    assert_eq!(proxy.injected(), 3, "every cut was met");

    // A server gone for good mid-read: an error from read, never a short object. Reading
    // ahead is bounded (4 ranges fetched or held, one in the channel, one being read: 24 MiB),
    // so the rest cannot have been fetched before the server went.
    let loc = litevault::location::s3::S3Location::open_with(&url, &via).unwrap();
    let mut r = loc.read_stream("big.tar.zst").unwrap();
    let mut head = vec![0u8; 1 << 20];
    r.read_exact(&mut head).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    proxy.break_all();
    let mut rest = Vec::new();
    let e = r
        .read_to_end(&mut rest)
        .expect_err("the read went on without the server");
    assert!(e.to_string().contains("download broke off"), "{e}");
    assert!(
        head.len() + rest.len() <= 24 << 20,
        "read {} bytes ahead",
        head.len() + rest.len()
    );
    // The error stays: a later read does not look like the end of the object.
    assert!(
        r.read(&mut head).is_err(),
        "a read after the error returned the end"
    );
}

#[test]
fn an_incremental_chain_lives_in_the_bucket_too() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 8);
    make_db(&db, "PRAGMA journal_mode=WAL;");
    let url = srv.url("chain");
    let full = run(
        &env,
        &srv,
        &[
            "backup",
            db.to_str().unwrap(),
            "--dir",
            &url,
            "--incremental",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(full["kind"], "full");
    std::thread::sleep(Duration::from_millis(1100));
    make_db(&db, "UPDATE items SET name = 'z' || name WHERE id % 20 = 0;");
    // Without this machine's record of the parent's checksum, the parent is read once.
    std::fs::remove_dir_all(env.path(".state")).unwrap();
    let inc = run(
        &env,
        &srv,
        &[
            "backup",
            db.to_str().unwrap(),
            "--dir",
            &url,
            "--incremental",
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(inc["kind"], "incremental", "{inc}");
    assert!(inc["archive_size"].as_u64().unwrap() * 4 < full["archive_size"].as_u64().unwrap());
    let out = env.path("restored.db");
    run(
        &env,
        &srv,
        &[
            "restore",
            "--latest",
            "--dir",
            &url,
            "--name",
            "app",
            out.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(content_hash(&out), content_hash(&db));
    let v = run(
        &env,
        &srv,
        &["verify", inc["archive"].as_str().unwrap(), "--json"],
    )
    .ok()
    .json();
    assert_eq!(v["ok"], true, "{v}");
}

#[test]
fn credentials_come_from_an_aws_profile_too() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let creds = env.path("aws-credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = AKWRONG\naws_secret_access_key = wrong\n\n[backups]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            srv.access_key, srv.secret_key
        ),
    )
    .unwrap();
    let with_profile = |profile: Option<&str>| {
        let mut c = env.command(&["backup", db.to_str().unwrap(), "--dir", &srv.url("profile")]);
        srv.apply_env(&mut c);
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        c.env("AWS_SHARED_CREDENTIALS_FILE", &creds);
        if let Some(p) = profile {
            c.env("AWS_PROFILE", p);
        }
        c.output().unwrap()
    };
    let out = with_profile(Some("backups"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(srv.object_keys("profile/").len(), 1);
    // The default profile's wrong keys: refused, one clear line.
    let out = with_profile(None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the credentials"));
}
