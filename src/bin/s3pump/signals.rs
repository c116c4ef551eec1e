//! SIGINT and SIGTERM: the first cancels the transfer through its
//! [`CancelHandle`] (requests in flight are cut short, no new one starts,
//! the multipart upload is aborted, a partial download's temporary file is
//! removed), the second exits at once.
//!
//! The handlers are signal-hook's: the signal only wakes a thread of ours,
//! which does the work outside the handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use s3pump::CancelHandle;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::progress;

/// The signal that cancelled the transfer, if one did.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicI32>);

impl Interrupt {
    /// The signal received first (`SIGINT` or `SIGTERM`), if any.
    pub fn signal(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

/// The exit status for a process ended by `signal`: 128 + its number, as
/// shells report it (130 for SIGINT, 143 for SIGTERM).
pub fn exit_status(signal: i32) -> u8 {
    (128 + signal) as u8
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Installs the handlers: the first SIGINT or SIGTERM cancels `cancel`, a
/// second one ends the process at once.
pub fn install(cancel: CancelHandle) -> std::io::Result<Interrupt> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let interrupt = Interrupt::default();
    let seen = interrupt.clone();
    std::thread::Builder::new()
        .name("s3pump-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if seen
                    .0
                    .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    progress::eprintln(&format!(
                        "s3pump: cancelled: {} received; cleaning up (send it again to exit at once)",
                        name(signal)
                    ));
                    cancel.cancel();
                } else {
                    progress::eprintln(&format!(
                        "s3pump: {} received again: exiting without cleaning up",
                        name(signal)
                    ));
                    std::process::exit(exit_status(signal).into());
                }
            }
        })?;
    Ok(interrupt)
}
