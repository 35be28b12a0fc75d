//! Progress reporting: a small trait the library calls during long work.
//!
//! The library never prints. Long operations call a [`Progress`] implementation that the caller
//! passes in; the default, [`NoProgress`], does nothing. The binary implements it with a terminal
//! progress bar. Implementations must be cheap: `advance` is called for every few hundred KiB.
//! Reports also carry the wall time of each phase ([`Phase`]), for people tuning performance.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Receives progress of a long operation, one phase at a time.
pub trait Progress: Send + Sync {
    /// A new phase starts (e.g. "snapshot", "compress", "verify"); `total` is its size in bytes
    /// when known.
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    /// `bytes` more bytes of the current phase are done.
    fn advance(&self, _bytes: u64) {}
    /// The current phase is finished.
    fn end(&self) {}
    /// Whether the caller wants the operation stopped. Asked after each `advance`: once it
    /// says yes, the operation stops with [`Error::Cancelled`](crate::error::Error::Cancelled), removes
    /// its temp files and publishes nothing.
    fn cancelled(&self) -> bool {
        false
    }
}

/// `advance(bytes)`, then `Err(Error::Cancelled)` if the receiver asks to stop.
pub(crate) fn step(progress: &dyn Progress, bytes: u64) -> crate::error::Result<()> {
    progress.advance(bytes);
    if progress.cancelled() {
        return Err(crate::error::Error::Cancelled);
    }
    Ok(())
}

/// [`step`] for readers and writers: the cancellation as [`crate::error::cancelled_io`].
pub(crate) fn step_io(progress: &dyn Progress, bytes: u64) -> std::io::Result<()> {
    progress.advance(bytes);
    if progress.cancelled() {
        return Err(crate::error::cancelled_io());
    }
    Ok(())
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// How long one phase of an operation took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    /// e.g. "checks", "archive", "fsync".
    pub name: String,
    /// Milliseconds.
    pub ms: u64,
}

/// Records the wall time of consecutive phases.
pub(crate) struct PhaseClock {
    last: Instant,
    phases: Vec<Phase>,
}

impl PhaseClock {
    pub(crate) fn new() -> Self {
        PhaseClock {
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// The phase `name` ends now.
    pub(crate) fn lap(&mut self, name: &str) {
        let now = Instant::now();
        self.phases.push(Phase {
            name: name.into(),
            ms: (now - self.last).as_millis() as u64,
        });
        self.last = now;
    }

    pub(crate) fn into_phases(self) -> Vec<Phase> {
        self.phases
    }
}
