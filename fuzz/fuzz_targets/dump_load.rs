//! The dump loader with its authorizer, the defence against hostile dumps: any text (a
//! litevault dump or a foreign one, compressed or not) loaded into a new database and checked
//! as `restore` and `verify` do (`dump::check::load_checked`, quick). Whatever the text, the
//! load must not panic and must create no file but the database (and its journal) it was
//! given: ATTACH, VACUUM INTO and the like are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::format::dump;
use litevault::NoProgress;

#[path = "common.rs"]
mod common;

const ALLOWED: [&str; 5] = [
    "input.sql",
    "out.db",
    "out.db-journal",
    "out.db-wal",
    "out.db-shm",
];

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    // A relative name (ATTACH 'x.db') lands in the working directory: an empty one of ours
    // while the load runs (and libFuzzer's own again after it, for its relative paths).
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let back = std::env::current_dir().expect("cwd");
    std::env::set_current_dir(&cwd).expect("chdir");
    let path = common::write_input("input.sql", data);
    let db = dir.join("out.db");
    let _ = dump::check::load_checked(&path, &db, true, false, &NoProgress, &common::ids());
    std::env::set_current_dir(back).expect("chdir back");
    if let Some(e) = std::fs::read_dir(&cwd).expect("list").next() {
        panic!(
            "the load created {:?} in the working directory",
            e.expect("entry").file_name()
        );
    }
    for entry in std::fs::read_dir(dir).expect("list scratch dir") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name == "state" || name == "cwd" {
            continue;
        }
        assert!(ALLOWED.contains(&name.as_ref()), "the load created {name:?}");
        if name != "input.sql" {
            std::fs::remove_file(dir.join(name.as_ref())).expect("remove");
        }
    }
});
