//! The CPU and I/O priority of background work: a backup should leave the application room.
//!
//! [`lower`] puts the calling thread (and the threads it starts afterwards, which inherit it:
//! on Linux both are per-thread attributes) at nice 10 and the lowest best-effort I/O priority.
//! When the machine is idle this changes nothing; when the application needs the CPU it gets
//! about nine tenths of a contended core. Failures are ignored: priority is advice.

/// The nice value of background work.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU and I/O priority for background work (see the module docs).
pub fn lower() {
    // SAFETY: plain system calls on the calling thread, with constant arguments.
    unsafe {
        let current = libc::getpriority(libc::PRIO_PROCESS, 0);
        if current < BACKGROUND_NICE {
            let _ = libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
        }
        #[cfg(target_os = "linux")]
        {
            const IOPRIO_WHO_PROCESS: libc::c_long = 1;
            const IOPRIO_CLASS_BE: libc::c_long = 2;
            const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
            let _ = libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0 as libc::c_long,
                (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_thread_that_lowers_itself_runs_at_nice_10_and_its_children_too() {
        std::thread::spawn(|| {
            super::lower();
            // SAFETY: getpriority on the calling thread.
            let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert!(mine >= super::BACKGROUND_NICE, "{mine}");
            let child = std::thread::spawn(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
                .join()
                .unwrap();
            assert_eq!(child, mine);
        })
        .join()
        .unwrap();
    }
}
