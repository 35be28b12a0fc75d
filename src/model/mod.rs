//! The model: litevault's data types and the pure functions on them, below every other layer
//! (no I/O, no SQLite connection, no storage). Checks and their findings, SQL quoting, object
//! names and references, compressions, durations. Other modules re-export what they always exported from here,
//! so their public paths stay.

pub mod check;
pub mod compression;
pub mod naming;
pub mod sql;
pub mod time;
