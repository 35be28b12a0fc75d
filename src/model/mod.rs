//! The model: litevault's data types and the pure functions on them, below every other layer
//! (no I/O, no SQLite connection, no storage). Checks and their findings, SQL quoting, object
//! names and references, compressions, durations. Other modules re-export what they always exported from here,
//! so their public paths stay.

pub mod check;
pub mod compression;
pub mod labels;
pub mod naming;
pub mod sql;
pub mod time;

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
