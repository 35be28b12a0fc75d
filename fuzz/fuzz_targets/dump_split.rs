//! The dump reader and statement splitter: `dump::open` (codec and content sniffing), the
//! header of a litevault dump (`read_header`), trailer lines, and the splitter that cuts SQL
//! text into statements as the loader does, checked against SQLite's own `sqlite3_complete`:
//! every statement the splitter hands on must end where SQLite says a statement ends.
#![no_main]

use std::ffi::CString;

use libfuzzer_sys::fuzz_target;
use litevault::format::dump::{self, Content};

#[path = "common.rs"]
mod common;

fn complete(text: &[u8]) -> bool {
    let c = CString::new(text).expect("no NUL");
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}

/// Where SQLite's rule ends statements: from the end of the previous one, the first `;` up to
/// which the text is complete. (Text that has no token, such as a lone `;` or a comment, is a
/// "statement" here that the splitter skips.)
fn sqlite_ends(text: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut from = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b';' && complete(&text[from..=i]) {
            ends.push(i + 1);
            from = i + 1;
        }
    }
    ends
}

fuzz_target!(|data: &[u8]| {
    let path = common::write_input("input.sql", data);
    if let Ok((_, content, mut reader)) = dump::open(&path, &common::ids()) {
        if content == Content::LitevaultDump {
            let _ = dump::read_header(&path, &mut *reader);
        }
    }
    let _ = dump::read_any_manifest(&path, &common::ids());
    for line in data.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(dump::TRAILER_PREFIX.as_bytes()) {
            let _ = dump::parse_trailer(&String::from_utf8_lossy(rest));
        }
    }

    // The loader refuses NUL bytes before splitting; EXPLAIN CREATE TRIGGER is split at its first
    // `;` (then refused by SQLite), where sqlite3_complete reads on to END.
    if data.contains(&0) || data.windows(7).any(|w| w.eq_ignore_ascii_case(b"EXPLAIN")) {
        return;
    }
    let ends = sqlite_ends(data);
    for track_only in [false, true] {
        let (stmts, _open) = dump::load::split_statements(data, track_only);
        let mut prev = 0;
        for (range, _line) in &stmts {
            assert!(range.start >= prev && range.end <= data.len());
            assert_eq!(data[range.end - 1], b';', "a statement ends with ';'");
            assert!(
                ends.contains(&range.end),
                "track_only={track_only}: the splitter ends a statement at byte {} where SQLite does not ({:?}); SQLite's ends: {ends:?}",
                range.end,
                String::from_utf8_lossy(&data[range.clone()])
            );
            prev = range.end;
        }
    }
});
