//! Progress reporting: a small trait the library calls during long work.
//!
//! The library never prints. Long operations call a [`Progress`] implementation that the caller
//! passes in; the default, [`NoProgress`], does nothing. The binary implements it with a terminal
//! progress bar. Implementations must be cheap: `advance` is called for every few hundred KiB.

/// Receives progress of a long operation, one phase at a time.
pub trait Progress: Send + Sync {
    /// A new phase starts (e.g. "snapshot", "compress", "verify"); `total` is its size in bytes
    /// when known.
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of the current phase are done.
    fn advance(&self, _bytes: u64) {}
    /// The current phase is finished.
    fn end(&self) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
