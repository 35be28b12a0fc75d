//! What a [`super::Replicator`] has done so far, as its poller and its shipper update it and
//! as `litevault replicate --json` and the daemon's API show it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the replicator has done so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicateStatus {
    /// The database.
    pub source: PathBuf,
    /// The location.
    pub location: String,
    /// The base archive of the current stream.
    pub base: Option<String>,
    /// Bases taken (the first one and one per gap).
    pub bases: u64,
    /// Gaps found (frames that could not be read before the WAL moved on).
    pub gaps: u64,
    /// Why the last gap happened.
    pub last_gap: Option<String>,
    /// Transactions read.
    pub transactions: u64,
    /// Transactions shipped (durable in the location).
    pub shipped: u64,
    /// The last transaction shipped in the current stream.
    pub last_txid: u64,
    /// Segments written.
    pub segments: u64,
    /// Bytes of pages shipped.
    pub bytes: u64,
    /// When the last shipped transaction was read (ms since the epoch).
    pub last_shipped_ms: Option<i64>,
    /// Transactions read and not shipped yet.
    pub pending: u64,
    /// The last error shipping met (cleared by the next success).
    pub last_error: Option<String>,
    /// While transactions wait: when the oldest of them was read, or a little earlier (ms
    /// since the epoch). The lag is the time since.
    pub oldest_pending_ms: Option<i64>,
}

impl ReplicateStatus {
    /// Seconds the oldest transaction read and not shipped yet has waited (0 when none waits).
    pub fn lag_secs(&self, now_ms: i64) -> f64 {
        self.oldest_pending_ms
            .filter(|_| self.pending > 0)
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0)
    }
}
