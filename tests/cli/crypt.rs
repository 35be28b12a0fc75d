//! Encrypted backups (age): round trips with the standard `age` CLI on both sides, several
//! recipients and SSH keys, wrong and missing keys, tampered and truncated archives, passphrases,
//! incremental chains (through this machine's record and through the identity), safety archives
//! of restore and merge, prune, and the S3 location.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::s3server::S3Server;
use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// `age-keygen -o NAME` in the workspace; returns (identity file, its recipient).
pub fn keygen(env: &Env, name: &str) -> (PathBuf, String) {
    let key = env.path(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .expect("the age CLI (Debian package `age`) is installed by .ci/run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("age-keygen").arg("-y").arg(&key).output().unwrap();
    assert!(out.status.success());
    (key, String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// A small database with a table whose name and contents must not be readable in the archive.
fn secret_db(env: &Env) -> PathBuf {
    let db = env.path("app.db");
    make_db(
        &db,
        "PRAGMA journal_mode=WAL;
         CREATE TABLE patient_records(id INTEGER PRIMARY KEY, diagnosis TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO patient_records SELECT i, 'confidential-diagnosis-' || i FROM n;",
    );
    db
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs a shell pipeline in `dir`; returns (status ok, stderr).
fn sh(dir: &Path, script: &str) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_encrypted_backup_is_opaque_and_round_trips_through_the_age_cli_both_ways() {
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let r = env
        .run(&["backup", s(&db), "--encrypt-to", &recipient, "--json"])
        .ok()
        .json();
    let archive = PathBuf::from(r["archive"].as_str().unwrap());
    assert!(s(&archive).ends_with(".tar.zst.age"), "{}", archive.display());
    assert_eq!(r["encrypted_to"], "1 recipient");
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(MAGIC));
    // Nothing about the database in clear: no table name, source path, host or content.
    for clear in [
        b"patient_records".as_slice(),
        b"confidential-diagnosis".as_slice(),
        s(&db).as_bytes(),
        b"manifest.json".as_slice(),
        b"SQLite format 3".as_slice(),
    ] {
        assert!(
            !contains(&bytes, clear),
            "{:?} readable",
            String::from_utf8_lossy(clear)
        );
    }
    // Nothing clear left behind either.
    assert_eq!(env.backup_files().len(), 1, "{:?}", env.backup_files());

    // The age CLI decrypts it; tar and sha256sum check it; SQLite opens it.
    let out = env.path("by-age");
    std::fs::create_dir(&out).unwrap();
    let (ok, err) = sh(
        &out,
        &format!(
            "age -d -i {} {} | tar --zstd -x && sha256sum -c SHA256SUMS",
            s(&key),
            s(&archive)
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(content_hash(&out.join("database.sqlite")), content_hash(&db));

    // litevault reads it with the identity: show, verify, restore.
    let m = env
        .run(&["show", s(&archive), "--identity", s(&key), "--json"])
        .ok()
        .json();
    assert_eq!(m["tables"][0]["name"], "patient_records");
    env.run(&["verify", s(&archive), "--identity", s(&key)]).ok();
    let restored = env.path("restored.db");
    env.run(&["restore", s(&archive), s(&restored), "--identity", s(&key)])
        .ok();
    assert_eq!(content_hash(&restored), content_hash(&db));
    // LITEVAULT_IDENTITY works as --identity does.
    let out = env
        .command(&["verify", s(&archive)])
        .env("LITEVAULT_IDENTITY", &key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The other way: a plain litevault archive encrypted by the age CLI is read by litevault.
    let plain = env.backup(&db, &["--dir", s(&env.path("plain"))]);
    let by_cli = env.path("by-cli.tar.zst.age");
    let (ok, err) = sh(
        env.dir.path(),
        &format!("age -r {recipient} -o {} {}", s(&by_cli), s(&plain)),
    );
    assert!(ok, "{err}");
    env.run(&["verify", s(&by_cli), "--identity", s(&key)]).ok();
    let restored2 = env.path("restored2.db");
    env.run(&["restore", s(&by_cli), s(&restored2), "--identity", s(&key)])
        .ok();
    assert_eq!(content_hash(&restored2), content_hash(&db));
}

#[test]
fn missing_and_wrong_keys_are_exit_1_and_say_so_several_recipients_each_read() {
    let env = Env::new();
    let db = secret_db(&env);
    let (k1, r1) = keygen(&env, "k1.txt");
    let (k2, r2) = keygen(&env, "k2.txt");
    let (k3, _) = keygen(&env, "k3.txt");
    // An SSH key as a third recipient, from a recipients file with comments.
    let ssh = env.path("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", s(&ssh)])
        .status()
        .unwrap();
    assert!(st.success());
    let ssh_pub = std::fs::read_to_string(ssh.with_extension("pub")).unwrap();
    let rfile = env.path("recipients.txt");
    std::fs::write(&rfile, format!("# the team\n{r2}\n\n{ssh_pub}")).unwrap();
    let r = env
        .run(&[
            "backup",
            s(&db),
            "--encrypt-to",
            &r1,
            "--encrypt-to-file",
            s(&rfile),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["encrypted_to"], "3 recipients");
    let archive = r["archive"].as_str().unwrap().to_string();
    for key in [&k1, &k2, &ssh] {
        env.run(&["verify", &archive, "--identity", s(key)]).ok();
    }
    // The age CLI reads it with the SSH key too.
    let (ok, err) = sh(
        env.dir.path(),
        &format!(
            "age -d -i {} {archive} | zstd -dc | tar -t | grep -qx database.sqlite",
            s(&ssh)
        ),
    );
    assert!(ok, "{err}");

    let none = env.run(&["restore", &archive, s(&env.path("x.db"))]).code(1);
    assert!(none.stderr.contains("--identity is needed"), "{}", none.stderr);
    let wrong = env
        .run(&["restore", &archive, s(&env.path("x.db")), "--identity", s(&k3)])
        .code(1);
    assert!(
        wrong.stderr.contains("no identity given fits"),
        "{}",
        wrong.stderr
    );
    assert!(!env.path("x.db").exists());
    let wrong = env
        .run(&["verify", &archive, "--identity", s(&k3), "--json"])
        .code(1);
    assert!(
        wrong.stdout.contains("no identity given fits") || wrong.stderr.contains("no identity given fits")
    );

    // list without a key: by name, size and "encrypted"; with one: the manifest.
    let listed = env.run(&["list"]).ok();
    assert!(listed.stdout.contains("encrypted"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("patient_records"));
    assert!(!listed.stdout.contains("unreadable"), "{}", listed.stdout);
    let j = env.run(&["list", "--json"]).ok().json();
    assert_eq!(j[0]["encrypted"], true);
    assert!(j[0]["manifest"].is_null());
    assert!(j[0]["error"].is_null());
    let j = env.run(&["list", "--json", "--identity", s(&k2)]).ok().json();
    assert_eq!(j[0]["encrypted"], true);
    assert_eq!(j[0]["manifest"]["tables"][0]["name"], "patient_records");

    // Bad keys on the command line: clear errors, nothing written.
    let bad = env.run(&["backup", s(&db), "--encrypt-to", "age1nope"]).code(2);
    assert!(bad.stderr.contains("not a valid age recipient"), "{}", bad.stderr);
    let secret = std::fs::read_to_string(&k1).unwrap();
    let secret_line = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-")).unwrap();
    let bad = env.run(&["backup", s(&db), "--encrypt-to", secret_line]).code(2);
    assert!(bad.stderr.contains("secret key"), "{}", bad.stderr);
    assert!(
        !bad.stderr.contains(secret_line),
        "a secret key is echoed: {}",
        bad.stderr
    );
    let bad = env
        .run(&[
            "backup",
            s(&db),
            "--encrypt-to",
            &r1,
            "-o",
            s(&env.path("x.tar.zst")),
        ])
        .code(2);
    assert!(bad.stderr.contains("ending in .age"), "{}", bad.stderr);
    env.run(&[
        "backup",
        s(&db),
        "--encrypt-to",
        &r1,
        "-o",
        s(&env.path("x.tar.zst.age")),
    ])
    .ok();
    env.run(&["verify", s(&env.path("x.tar.zst.age")), "--identity", s(&k1)])
        .ok();
    let bad = env.run(&["verify", &archive, "--identity", s(&rfile)]).code(1);
    assert!(bad.stderr.contains("recipients.txt"), "{}", bad.stderr);
    assert_eq!(env.backup_files().len(), 1);
}

#[test]
fn a_tampered_or_truncated_encrypted_archive_is_exit_3_and_restores_nothing() {
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let archive = env.backup(&db, &["--encrypt-to", &recipient]);
    let bytes = std::fs::read(&archive).unwrap();
    // One flipped bit in the payload, one near the end, and a truncation.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("flipped", {
            let mut b = bytes.clone();
            let i = b.len() / 2;
            b[i] ^= 0x01;
            b
        }),
        ("tail", {
            let mut b = bytes.clone();
            let i = b.len() - 3;
            b[i] ^= 0x80;
            b
        }),
        ("truncated", bytes[..bytes.len() - 100].to_vec()),
        ("header-cut", bytes[..30].to_vec()),
        ("header-only", {
            let end = bytes.windows(4).position(|w| w == b"\n---").unwrap();
            let nl = end + 1 + bytes[end + 1..].iter().position(|&b| b == b'\n').unwrap();
            bytes[..nl + 1].to_vec()
        }),
    ];
    for (what, data) in cases {
        let bad = env.path(&format!("{what}.tar.zst.age"));
        std::fs::write(&bad, data).unwrap();
        let v = env.run(&["verify", s(&bad), "--identity", s(&key)]).code(3);
        let said = format!("{}{}", v.stdout, v.stderr);
        assert!(
            said.contains("authenticate") || said.contains("truncated"),
            "{what}: {v:?}"
        );
        let target = env.path(&format!("{what}.db"));
        env.run(&["restore", s(&bad), s(&target), "--identity", s(&key)])
            .code(3);
        assert!(!target.exists(), "{what}: something was restored");
        let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".litevault"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    // The intact one still restores.
    let ok = env.path("ok.db");
    env.run(&["restore", s(&archive), s(&ok), "--identity", s(&key)])
        .ok();
    assert_eq!(content_hash(&ok), content_hash(&db));
}

#[test]
fn a_passphrase_encrypts_archives_and_dumps_and_a_wrong_one_is_refused() {
    let env = Env::new();
    let db = secret_db(&env);
    let pass = env.path("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let wrong = env.path("wrong.txt");
    std::fs::write(&wrong, "incorrect horse\n").unwrap();
    let archive = env.backup(&db, &["--passphrase-file", s(&pass)]);
    let dump = env.backup(&db, &["--passphrase-file", s(&pass), "--format", "sql"]);
    assert!(s(&dump).ends_with(".sql.zst.age"), "{}", dump.display());
    for (i, f) in [&archive, &dump].into_iter().enumerate() {
        assert!(std::fs::read(f).unwrap().starts_with(MAGIC));
        let none = env.run(&["verify", s(f)]).code(1);
        assert!(
            none.stderr.contains("--passphrase-file is needed"),
            "{}",
            none.stderr
        );
        let bad = env.run(&["verify", s(f), "--passphrase-file", s(&wrong)]).code(1);
        assert!(bad.stderr.contains("passphrase is wrong"), "{}", bad.stderr);
        let target = env.path(&format!("r{i}.db"));
        env.run(&["restore", s(f), s(&target), "--passphrase-file", s(&pass)])
            .ok();
        assert_eq!(content_hash(&target), content_hash(&db));
    }
    let (_, recipient) = keygen(&env, "key.txt");
    let both = env
        .run(&[
            "backup",
            s(&db),
            "--passphrase-file",
            s(&pass),
            "--encrypt-to",
            &recipient,
        ])
        .code(2);
    assert!(both.stderr.contains("cannot be combined"), "{}", both.stderr);
}

#[test]
fn an_encrypted_chain_is_incremental_from_this_machines_record_or_the_identity() {
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let backups = env.backups();
    let inc = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "backup",
            s(&db),
            "--dir",
            s(&backups),
            "--incremental",
            "--encrypt-to",
            &recipient,
        ];
        args.extend_from_slice(extra);
        args.push("--json");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        env.run(&args).ok().json()
    };
    let base = inc(&[]);
    assert_eq!(base["kind"], "full");
    make_db(
        &db,
        "UPDATE patient_records SET diagnosis = 'changed' WHERE id <= 10;",
    );
    // No identity given: the parent's page hashes come from this machine's record.
    let second = inc(&[]);
    assert_eq!(second["kind"], "incremental", "{second}");
    assert!(second["changed_pages"].as_u64().unwrap() < 10);
    make_db(&db, "INSERT INTO patient_records VALUES (99999, 'new');");
    // Without the record (another machine) and without the identity: full, and it says why.
    std::fs::remove_dir_all(env.path(".state")).unwrap();
    let third = inc(&[]);
    assert_eq!(third["kind"], "full");
    assert!(
        third["full_reason"].as_str().unwrap().contains("encrypted"),
        "{third}"
    );
    make_db(&db, "DELETE FROM patient_records WHERE id = 5;");
    // With the identity (and no record): the parent is read through decryption.
    std::fs::remove_dir_all(env.path(".state")).unwrap();
    let fourth = inc(&["--identity", s(&key)]);
    assert_eq!(fourth["kind"], "incremental", "{fourth}");
    assert_eq!(
        fourth["parent"],
        PathBuf::from(third["archive"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    // Every link is encrypted; the chain restores bit for bit.
    for f in env.backup_files() {
        assert!(f.ends_with(".tar.zst.age"), "{f}");
        assert!(std::fs::read(backups.join(&f)).unwrap().starts_with(MAGIC));
    }
    for link in [&second, &fourth] {
        let archive = link["archive"].as_str().unwrap();
        env.run(&["verify", archive, "--identity", s(&key)]).ok();
    }
    let restored = env.path("latest.db");
    env.run(&[
        "restore",
        "--latest",
        "--name",
        "app",
        s(&restored),
        "--identity",
        s(&key),
    ])
    .ok();
    assert_eq!(content_hash(&restored), content_hash(&db));
    let second_db = env.path("second.db");
    env.run(&[
        "restore",
        second["archive"].as_str().unwrap(),
        s(&second_db),
        "--identity",
        s(&key),
    ])
    .ok();
    assert_eq!(
        query_i64(
            &second_db,
            "SELECT count(*) FROM patient_records WHERE diagnosis = 'changed'"
        ),
        10
    );
    // Without the identity the chain cannot be read: exit 1, not "damaged".
    env.run(&[
        "restore",
        fourth["archive"].as_str().unwrap(),
        s(&env.path("n.db")),
    ])
    .code(1);

    // prune needs the manifests to keep parents: without the identity it stops, deleting nothing.
    let before = env.backup_files();
    let p = env.run(&["prune", "--keep-last", "1"]).code(1);
    assert!(p.stderr.contains("--identity"), "{}", p.stderr);
    assert_eq!(env.backup_files(), before);
    let p = env
        .run(&["prune", "--keep-last", "1", "--identity", s(&key), "--json"])
        .ok()
        .json();
    assert_eq!(p["deleted"].as_array().unwrap().len(), 2, "{p}");
    env.run(&[
        "restore",
        "--latest",
        "--name",
        "app",
        s(&env.path("after-prune.db")),
        "--identity",
        s(&key),
    ])
    .ok();
}

#[test]
fn safety_archives_of_restore_and_merge_are_encrypted_when_asked_and_the_plan_says_otherwise() {
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let archive = env.backup(&db, &["--encrypt-to", &recipient]);
    let target = env.path("target.db");
    make_db(
        &target,
        "CREATE TABLE old_stuff(x); INSERT INTO old_stuff VALUES ('previous');",
    );
    // Without --encrypt-to: the plan warns that the safety archive will be in clear.
    let plan = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--overwrite",
            "--dry-run",
            "--json",
            "--identity",
            s(&key),
        ])
        .ok()
        .json();
    assert!(plan["warnings"].to_string().contains("stored in clear"), "{plan}");
    assert!(plan["safety_encrypted_to"].is_null());
    // With it: the safety archive is encrypted, and holds the replaced database.
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--overwrite",
            "--json",
            "--identity",
            s(&key),
            "--encrypt-to",
            &recipient,
        ])
        .ok()
        .json();
    assert_eq!(r["plan"]["safety_encrypted_to"], "1 recipient");
    let safety = r["safety_archive"].as_str().unwrap().to_string();
    assert!(safety.ends_with(".tar.zst.age"), "{safety}");
    let sbytes = std::fs::read(&safety).unwrap();
    assert!(sbytes.starts_with(MAGIC) && !contains(&sbytes, b"old_stuff"));
    let back = env.path("back.db");
    env.run(&["restore", &safety, s(&back), "--identity", s(&key)])
        .ok();
    assert_eq!(query_i64(&back, "SELECT count(*) FROM old_stuff"), 1);
    assert_eq!(content_hash(&target), content_hash(&db));

    // merge: its safety archive too.
    let other = env.path("other.db");
    make_db(&other, "CREATE TABLE patient_records(id INTEGER PRIMARY KEY, diagnosis TEXT); INSERT INTO patient_records VALUES (500000, 'merged');");
    let other_archive = env.backup(&other, &["--encrypt-to", &recipient, "--dir", s(&env.path("o"))]);
    let m = env
        .run(&[
            "merge",
            s(&other_archive),
            s(&target),
            "--identity",
            s(&key),
            "--encrypt-to",
            &recipient,
            "--json",
        ])
        .ok()
        .json();
    let safety = m["safety_archive"].as_str().unwrap();
    assert!(safety.ends_with(".age"), "{m}");
    assert!(std::fs::read(safety).unwrap().starts_with(MAGIC));
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM patient_records WHERE id = 500000"),
        1
    );
}

fn s3_run(env: &Env, srv: &S3Server, args: &[&str]) -> Run {
    let mut c = env.command(args);
    srv.apply_env(&mut c);
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn encrypted_backups_and_chains_on_the_s3_location() {
    let srv = S3Server::start();
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let url = srv.url("enc/app");
    let full = s3_run(
        &env,
        &srv,
        &[
            "backup",
            s(&db),
            "--dir",
            &url,
            "--incremental",
            "--encrypt-to",
            &recipient,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(full["kind"], "full");
    make_db(&db, "UPDATE patient_records SET diagnosis = 'x' WHERE id = 1;");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let inc = s3_run(
        &env,
        &srv,
        &[
            "backup",
            s(&db),
            "--dir",
            &url,
            "--incremental",
            "--encrypt-to",
            &recipient,
            "--json",
        ],
    )
    .ok()
    .json();
    assert_eq!(inc["kind"], "incremental", "{inc}");
    let keys = srv.object_keys("enc/app/");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.ends_with(".tar.zst.age")), "{keys:?}");
    // The stored objects are age files (pulled back with copy, byte for byte).
    let local = env.path("pulled");
    std::fs::create_dir(&local).unwrap();
    s3_run(
        &env,
        &srv,
        &["copy", full["archive"].as_str().unwrap(), s(&local)],
    )
    .ok();
    let name = Path::new(full["archive"].as_str().unwrap()).file_name().unwrap();
    let pulled = std::fs::read(local.join(name)).unwrap();
    assert!(pulled.starts_with(MAGIC) && !contains(&pulled, b"patient_records"));
    // list without a key shows them as encrypted; restore --latest composes the chain.
    let listed = s3_run(&env, &srv, &["list", "--dir", &url, "--json"]).ok().json();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["encrypted"] == true && a["manifest"].is_null()));
    let restored = env.path("r.db");
    s3_run(
        &env,
        &srv,
        &[
            "restore",
            "--latest",
            "--dir",
            &url,
            "--name",
            "app",
            s(&restored),
            "--identity",
            s(&key),
        ],
    )
    .ok();
    assert_eq!(content_hash(&restored), content_hash(&db));
    // A restore over a database whose safety archive would go into the bucket in clear: refused.
    let target = env.path("t.db");
    make_db(&target, "CREATE TABLE t(x);");
    let refused = s3_run(
        &env,
        &srv,
        &[
            "restore",
            "--latest",
            "--dir",
            &url,
            "--name",
            "app",
            s(&target),
            "--overwrite",
            "--identity",
            s(&key),
            "--safety-dir",
            &srv.url("enc/safety"),
        ],
    )
    .code(2);
    assert!(refused.stderr.contains("in clear"), "{}", refused.stderr);
    assert_eq!(
        query_i64(&target, "SELECT count(*) FROM sqlite_schema WHERE name = 't'"),
        1
    );
}

#[test]
fn the_daemon_encrypts_its_backups_drills_them_with_its_identity_and_checks_the_keys_at_start() {
    use crate::daemon::{Daemon, TOKEN};
    let env = Env::new();
    let db = secret_db(&env);
    let (_, recipient) = keygen(&env, "key.txt");
    std::fs::write(env.path("recipients.txt"), format!("{recipient}\n")).unwrap();
    let database = format!(
        "[[databases]]\nname = \"app\"\npath = \"{}\"\nlocation = \"backups\"\nschedule = \"every 1h\"\nincremental = true\nverify = \"every 1h\"\nkeep = {{ last = 2 }}\nencrypt_to_file = [\"recipients.txt\"]\n",
        s(&db)
    );
    // Encrypted with drills and retention but nothing to read them with: refused at start.
    std::fs::write(env.path("no-key.toml"), &database).unwrap();
    let r = env.run(&["serve", "--config", "no-key.toml", "--check"]).code(1);
    assert!(r.stderr.contains("identity_file"), "{}", r.stderr);

    std::fs::write(
        env.path("with-key.toml"),
        format!("identity_file = [\"key.txt\"]\n{database}"),
    )
    .unwrap();
    let r = env.run(&["serve", "--config", "with-key.toml", "--check"]).ok();
    assert!(r.stdout.contains("encrypted to 1 recipient"), "{}", r.stdout);
    let j = env
        .run(&["serve", "--config", "with-key.toml", "--check", "--json"])
        .ok()
        .json();
    assert_eq!(j["databases"][0]["encrypted_to"], "1 recipient");
    assert_eq!(j["identities"], true);
    let d = Daemon::start(
        env.dir.path(),
        &format!("identity_file = [\"key.txt\"]\n{database}"),
        Some(TOKEN),
        &[],
    );
    // The first backup and drill run at start; a second backup through the API is incremental.
    d.wait_for(60, "a passed drill", |d| {
        d.get("/api/backup/status").json()["databases"][0]["last_verify"]["ok"]
            .as_bool()
            .filter(|ok| *ok)
    });
    make_db(&db, "UPDATE patient_records SET diagnosis = 'x' WHERE id = 7;");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = d.post("/api/backup/create", r#"{"database":"app"}"#);
    assert_eq!(r.status, 202, "{}", r.body);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["kind"], "incremental", "{job}");
    let files: Vec<String> = env
        .backup_files()
        .into_iter()
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert!(f.ends_with(".tar.zst.age"), "{f}");
        assert!(std::fs::read(env.backups().join(f)).unwrap().starts_with(MAGIC));
    }
    // A drill through the API reads the encrypted chain with the daemon's identity.
    let r = d.post("/api/backup/verify", r#"{"database":"app"}"#);
    let job = d.wait_job(r.json()["job"].as_u64().unwrap(), 60);
    assert_eq!(job["state"], "done", "{job}");
    // The API's list shows them (the daemon has the key).
    let listed = d.get("/api/backups?database=app").json();
    assert!(listed.to_string().contains("patient_records"), "{listed}");
}

#[test]
fn files_beside_the_database_are_encrypted_with_it_and_come_back_with_the_identity() {
    let env = Env::new();
    let db = secret_db(&env);
    let (key, recipient) = keygen(&env, "key.txt");
    let up = env.path("uploads");
    std::fs::create_dir_all(up.join("scans")).unwrap();
    std::fs::write(up.join("scans/xray-of-patient-42.png"), vec![42u8; 200_000]).unwrap();
    std::fs::write(up.join("notes.txt"), b"private note").unwrap();
    let r = env
        .run(&[
            "backup",
            s(&db),
            "--include",
            s(&up),
            "--encrypt-to",
            &recipient,
            "--json",
        ])
        .ok()
        .json();
    let archive = r["archive"].as_str().unwrap().to_string();
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(MAGIC));
    for clear in [
        b"xray-of-patient-42".as_slice(),
        b"private note".as_slice(),
        b"files/uploads".as_slice(),
    ] {
        assert!(
            !contains(&bytes, clear),
            "{:?} readable",
            String::from_utf8_lossy(clear)
        );
    }
    // age -d, tar -x and sha256sum -c check the files too.
    let out = env.path("by-age");
    std::fs::create_dir(&out).unwrap();
    let (ok, err) = sh(
        &out,
        &format!(
            "age -d -i {} {archive} | tar --zstd -x && sha256sum -c SHA256SUMS",
            s(&key)
        ),
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(out.join("files/uploads/notes.txt")).unwrap(),
        b"private note"
    );
    // Without the key: not even the plan; with it: database and files back.
    let target = env.path("srv");
    env.run(&[
        "restore",
        &archive,
        s(&env.path("n.db")),
        "--files-to",
        s(&target),
        "--dry-run",
    ])
    .code(1);
    env.run(&[
        "restore",
        &archive,
        s(&env.path("n.db")),
        "--files-to",
        s(&target),
        "--identity",
        s(&key),
    ])
    .ok();
    assert_eq!(content_hash(&env.path("n.db")), content_hash(&db));
    assert_eq!(
        std::fs::read(target.join("uploads/scans/xray-of-patient-42.png")).unwrap(),
        vec![42u8; 200_000]
    );
    let listed = env.run(&["list", "--json", "--identity", s(&key)]).ok().json();
    assert_eq!(listed[0]["files"], 4, "{listed}");
}
