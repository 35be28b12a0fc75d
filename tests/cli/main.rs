//! One integration test binary that drives the real `litevault` executable.
//!
//! Modules by command; `util` holds the small helpers (temp workspaces, running the binary,
//! building databases) and `helper` the roles this same binary plays as a second process
//! (a continuous writer, a process holding a database open).

mod util;

mod daemon;

mod faultproxy;
mod s3server;

mod backup;
mod crypt;
mod deploy;
mod dump;
mod faults;
mod files;
mod golden;
mod helper;
mod hot;
mod incremental;
mod list;
mod merge;
mod messages;
mod races;
mod replicate;
mod restore;
mod s3;
mod serve;
mod serve_hostile;
mod verify;
