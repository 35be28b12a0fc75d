//! What every operation runs with besides its own options: the keys that read encrypted
//! backups, zstd's worker threads, the priority of the work. One [`Context`] is built by
//! whoever drives the library (the command line from its flags, the daemon from its
//! configuration, an application in code) and handed to each operation; nothing of it is
//! process-wide state.

use crate::format::crypt::Identities;

/// The settings an operation runs with that are not its own options.
///
/// ```
/// let ctx = litevault::Context::new().with_threads(2).in_background();
/// assert_eq!(ctx.threads(), 2);
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Context {
    identities: Identities,
    threads: u32,
    background: bool,
}

impl Context {
    /// No keys, zstd workers on every core, normal priority.
    pub fn new() -> Context {
        Context::default()
    }

    /// The keys that read encrypted backups (every reader: list, show, verify, restore,
    /// merge, prune, chains). Without them an encrypted backup is refused with a hint.
    pub fn with_identities(mut self, identities: Identities) -> Context {
        self.identities = identities;
        self
    }

    /// zstd worker threads of a compressing backup: 0 is one per core (the default), 1 one
    /// worker beside the thread that reads the pages.
    pub fn with_threads(mut self, threads: u32) -> Context {
        self.threads = threads;
        self
    }

    /// Runs the operation as background work: the thread that runs it (and the threads it
    /// starts) at a lower CPU and I/O priority, for the rest of that thread's life (see
    /// [`crate::priority`]).
    pub fn in_background(mut self) -> Context {
        self.background = true;
        self
    }

    /// The keys that read encrypted backups.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// zstd worker threads (0: one per core).
    pub fn threads(&self) -> u32 {
        self.threads
    }

    /// Whether the work runs at background priority.
    pub fn background(&self) -> bool {
        self.background
    }

    /// Lowers the calling thread's priority when this is background work.
    pub(crate) fn apply_priority(&self) {
        if self.background {
            crate::priority::lower();
        }
    }
}
