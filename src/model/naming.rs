//! Object references as users write them: a local path, or `s3://bucket/key`.

use std::path::Path;

/// Whether `path` names an object or prefix in a bucket (`s3://...`).
pub fn is_remote(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.starts_with("s3://"))
}
