//! How an archive is compressed ([`Compression`]): its names, file extension and default level.

use serde::{Deserialize, Serialize};

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (multi-threaded), `.tar.zst`.
    #[default]
    Zstd,
    /// gzip, `.tar.gz`.
    Gzip,
    /// No compression, `.tar`.
    None,
}

impl Compression {
    /// The file extension, with its leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => ".tar.zst",
            Compression::Gzip => ".tar.gz",
            Compression::None => ".tar",
        }
    }

    /// The default level (zstd 3, gzip 6).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compression::Zstd => Some(3),
            Compression::Gzip => Some(6),
            Compression::None => None,
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        })
    }
}
