//! Faults a user meets: Ctrl-C (SIGINT) and SIGTERM in the middle of a command. Each must exit
//! with 130 or 143, remove its temp files, and leave the target as it was.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::util::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Waits until a temp entry exists in one of `dirs` (the command is mid-work), then sends
/// `sig`; returns the exit code and stderr.
fn interrupt(mut child: Child, dirs: &[PathBuf], sig: i32) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while dirs.iter().all(|d| temps_in(d).is_empty()) {
        assert!(Instant::now() < deadline, "the command never made a temp file");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the command ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn big_db(env: &Env) -> PathBuf {
    let db = env.path("big.db");
    make_sized_db(&db, 200);
    db
}

#[test]
fn sigint_during_a_backup_removes_its_temp_files_and_publishes_nothing() {
    let env = Env::new();
    let db = big_db(&env);
    // Rollback mode: the snapshot is a temp copy first, then the archive.
    let child = env.command(&["backup", s(&db)]).spawn().unwrap();
    let (code, stderr) = interrupt(child, &[env.backups()], libc::SIGINT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted (SIGINT)"), "{stderr}");
    assert!(env.backup_files().is_empty(), "left: {:?}", env.backup_files());
}

#[test]
fn sigterm_during_a_restore_leaves_the_target_untouched_and_no_temp_files() {
    let env = Env::new();
    let db = big_db(&env);
    let archive = env.backup(&db, &[]);
    // Over an existing database (with --overwrite): the safety archive, then the restore.
    let target = env.path("target.db");
    make_db(&target, "CREATE TABLE kept(x); INSERT INTO kept VALUES (42);");
    let before = content_hash(&target);
    let child = env
        .command(&["restore", s(&archive), s(&target), "--overwrite"])
        .spawn()
        .unwrap();
    let (code, stderr) = interrupt(
        child,
        &[env.backups(), env.dir.path().to_path_buf()],
        libc::SIGTERM,
    );
    assert_eq!(code, Some(143), "{stderr}");
    assert_eq!(content_hash(&target), before, "the target changed");
    assert!(
        temps_in(env.dir.path()).is_empty(),
        "{:?}",
        temps_in(env.dir.path())
    );
    assert!(
        temps_in(&env.backups()).is_empty(),
        "{:?}",
        temps_in(&env.backups())
    );
    // And a new target is not created at all.
    let fresh = env.path("fresh.db");
    let child = env.command(&["restore", s(&archive), s(&fresh)]).spawn().unwrap();
    let (code, _) = interrupt(child, &[env.dir.path().to_path_buf()], libc::SIGINT);
    assert_eq!(code, Some(130));
    assert!(!fresh.exists());
    assert!(temps_in(env.dir.path()).is_empty());
}

#[test]
fn sigint_during_verify_and_a_dump_restore_removes_their_temp_files() {
    let env = Env::new();
    let db = big_db(&env);
    let archive = env.backup(&db, &[]);
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let child = env
        .command(&["verify", s(&archive), "--temp-dir", s(&scratch)])
        .spawn()
        .unwrap();
    let (code, stderr) = interrupt(child, std::slice::from_ref(&scratch), libc::SIGINT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(temps_in(&scratch).is_empty(), "{:?}", temps_in(&scratch));

    let dump = env.backup(&db, &["--format", "sql"]);
    let target = env.path("from-dump.db");
    let child = env.command(&["restore", s(&dump), s(&target)]).spawn().unwrap();
    let (code, stderr) = interrupt(child, &[env.dir.path().to_path_buf()], libc::SIGTERM);
    assert_eq!(code, Some(143), "{stderr}");
    assert!(!target.exists());
    assert!(
        temps_in(env.dir.path()).is_empty(),
        "{:?}",
        temps_in(env.dir.path())
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_targets_and_directories_as_they_were() {
    let env = Env::new();
    let db = env.path("app.db");
    make_sized_db(&db, 12);
    let Some(disk) = SmallDisk::mount(env.path("small"), 5) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let small = disk.0.clone();
    let no_space = |r: &Run, what: &str| {
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("no space left") || r.stderr.contains("not enough free space"),
            "{what}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("panicked"), "{what}");
        assert!(temps_in(&small).is_empty(), "{what}: {:?}", temps_in(&small));
    };
    // Backup (archive, SQL dump, incremental) onto the small disk: nothing published. The WAL
    // copy streams its pages (no temp copy, so the space check passes and the disk fills up
    // while the archive is written); the rollback-mode one is refused by the space check.
    let wal = env.path("wal.db");
    std::fs::copy(&db, &wal).unwrap();
    make_db(&wal, "PRAGMA journal_mode=WAL;");
    let backups = small.join("backups");
    for source in [&wal, &db] {
        for extra in [&[][..], &["--format", "sql"][..], &["--incremental"][..]] {
            let mut args = vec!["backup", s(source), "--dir", s(&backups)];
            args.extend_from_slice(extra);
            let r = env.run(&args);
            no_space(&r, &format!("backup {} {extra:?}", s(source)));
            let left = std::fs::read_dir(&backups).map(|d| d.count()).unwrap_or(0);
            assert_eq!(left, 0, "backup {extra:?} left files");
        }
    }
    // Restore to a new file and over an existing one on the small disk.
    let archive = env.backup(&db, &[]);
    let fresh = small.join("fresh.db");
    no_space(&env.run(&["restore", s(&archive), s(&fresh)]), "restore");
    assert!(!fresh.exists());
    let target = small.join("target.db");
    make_db(&target, "CREATE TABLE kept(x); INSERT INTO kept VALUES (42);");
    let before = content_hash(&target);
    no_space(
        &env.run(&["restore", s(&archive), s(&target), "--overwrite"]),
        "restore --overwrite",
    );
    assert_eq!(content_hash(&target), before);
    // A dump load, and a merge that outgrows the disk inside its transaction.
    let dump = env.backup(&db, &["--format", "sql"]);
    no_space(&env.run(&["restore", s(&dump), s(&fresh)]), "dump restore");
    assert!(!fresh.exists());
    let r = env.run(&[
        "merge",
        s(&archive),
        s(&target),
        "--no-safety-copy",
        "--create-missing-tables",
    ]);
    no_space(&r, "merge");
    assert_eq!(content_hash(&target), before);
}

#[test]
fn read_only_and_forbidden_places_are_clear_errors_that_change_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let archive = env.backup(&db, &[]);
    // Running as root ignores permission bits: drop to nobody for these checks when root.
    let as_nobody = unsafe { libc::geteuid() } == 0;
    // The other user runs a copy of the binary inside the workspace (the build directory may sit
    // under a home directory it cannot enter).
    let own_bin = env.path("litevault-bin");
    std::fs::copy(bin(), &own_bin).unwrap();
    std::fs::set_permissions(&own_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run_as = |args: &[&str]| -> Run {
        use std::os::unix::process::CommandExt;
        let mut c = env.command(args);
        if as_nobody {
            let mut other = std::process::Command::new(&own_bin);
            other
                .args(args)
                .current_dir(env.dir.path())
                .env("LITEVAULT_DIR", env.backups())
                .env("LITEVAULT_STATE_DIR", env.path(".state"))
                .env("HOME", env.path("home-of-nobody"))
                .stdin(std::process::Stdio::null())
                .uid(65534)
                .gid(65534);
            c = other;
        }
        let out = c.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    // Everything the other user needs to read.
    for p in [env.dir.path().to_path_buf(), env.backups()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for p in [&db, &archive] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let locked = env.path("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // A backup into a read-only directory.
    let r = run_as(&["backup", s(&db), "--dir", s(&locked)]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("Permission denied") || r.stderr.contains("Read-only"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
    // A restore into it, and over a database the user may not write.
    let r = run_as(&["restore", s(&archive), s(&locked.join("new.db"))]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);
    let theirs = env.path("theirs.db");
    make_db(&theirs, "CREATE TABLE kept(x); INSERT INTO kept VALUES (1);");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = content_hash(&theirs);
    let r = run_as(&[
        "restore",
        s(&archive),
        s(&theirs),
        "--overwrite",
        "--safety-dir",
        s(&env.path("safety")),
    ]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(content_hash(&theirs), before);
    assert!(
        temps_in(env.dir.path()).is_empty(),
        "{:?}",
        temps_in(env.dir.path())
    );
}

#[test]
fn temp_and_safety_directories_on_another_filesystem_work() {
    let env = Env::new();
    let db = copy_fixture(&env, "real/Chinook_Sqlite.sqlite");
    let archive = env.backup(&db, &[]);
    let Some(disk) = SmallDisk::mount(env.path("other-fs"), 64) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let other = disk.0.clone();
    // verify extracts onto the other filesystem.
    let v = env
        .run(&["verify", s(&archive), "--temp-dir", s(&other), "--json"])
        .ok()
        .json();
    assert_eq!(v["ok"], true);
    // A restore whose safety archive goes to the other filesystem, and a backup published there.
    let target = env.path("target.db");
    make_db(&target, "CREATE TABLE kept(x); INSERT INTO kept VALUES (1);");
    let r = env
        .run(&[
            "restore",
            s(&archive),
            s(&target),
            "--overwrite",
            "--safety-dir",
            s(&other),
            "--json",
        ])
        .ok()
        .json();
    assert!(r["safety_archive"].as_str().unwrap().starts_with(s(&other)));
    assert_eq!(content_hash(&target), content_hash(&db));
    let b = env.backup(&db, &["--dir", s(&other.join("b"))]);
    assert!(b.starts_with(&other));
    assert!(temps_in(&other).is_empty() && temps_in(env.dir.path()).is_empty());
}
