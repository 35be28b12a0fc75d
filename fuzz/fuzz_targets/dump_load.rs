//! The dump loader with its authorizer, the defence against hostile dumps: any text (a
//! litevault dump or a foreign one, compressed or not) loaded into a new database and checked
//! as `restore` and `verify` do (`dump::check::load_checked`, quick). Whatever the text, the
//! load must not panic and must create no file but the database (and its journal) it was
//! given: ATTACH, VACUUM INTO and the like are refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault::{dump, NoProgress};

#[path = "common.rs"]
mod common;

const ALLOWED: [&str; 5] = [
    "input.sql",
    "out.db",
    "out.db-journal",
    "out.db-wal",
    "out.db-shm",
];

/// The entries of the working directory (where a relative name, ATTACH 'x.db', would land),
/// but libFuzzer's own artifacts.
fn cwd_entries() -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(".")
        .expect("list working dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            !["crash-", "leak-", "timeout-", "oom-", "slow-unit-", "fuzz-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch();
    let before = cwd_entries();
    let path = common::write_input("input.sql", data);
    let db = dir.join("out.db");
    let _ = dump::check::load_checked(&path, &db, true, false, &NoProgress);
    assert_eq!(
        cwd_entries(),
        before,
        "the load created a file in the working directory"
    );
    for entry in std::fs::read_dir(dir).expect("list scratch dir") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name == "state" {
            continue;
        }
        assert!(ALLOWED.contains(&name.as_ref()), "the load created {name:?}");
        if name != "input.sql" {
            std::fs::remove_file(dir.join(name.as_ref())).expect("remove");
        }
    }
});
