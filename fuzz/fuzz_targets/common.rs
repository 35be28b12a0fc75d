//! Shared by the fuzz targets: a private directory per process, inputs written to files in it
//! (the library's readers take paths).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch directory (removed at exit only if the process ends normally; it
/// lives under the system temp directory).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        // No state from this machine's real backups: the SHA-256 records of `chain::remember`.
        let d = tempfile::Builder::new()
            .prefix("litevault-fuzz-")
            .tempdir()
            .expect("temp dir");
        std::env::set_var("LITEVAULT_STATE_DIR", d.path().join("state"));
        d
    })
    .path()
}

#[allow(dead_code)] // not every target reads files
/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn write_input(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, data).expect("write input");
    p
}

/// No keys: the fuzz inputs are read as a user without an identity reads a backup.
#[allow(dead_code)]
pub fn ids() -> litevault::format::crypt::Identities {
    litevault::format::crypt::Identities::default()
}
