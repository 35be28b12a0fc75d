//! The model: litevault's data types and the pure functions on them, below every other layer
//! (no I/O, no SQLite connection, no storage). Checks and their findings, SQL quoting, the
//! reading of object references. Other modules re-export what they always exported from here,
//! so their public paths stay.

pub mod check;
pub mod naming;
pub mod sql;
