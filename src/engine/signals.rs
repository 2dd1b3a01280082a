//! SIGTERM, SIGINT and SIGHUP while a token request is in flight.
//!
//! With refresh-token rotation, the server's answer is the only copy of the
//! new refresh token: a run stopped between that answer and the save would
//! strand the chain. So while a [`Hold`] exists (from just before a token
//! request until its answer is saved or put in a recovery file) a stop
//! signal is only noted; when the last hold ends, the run exits as the
//! signal asked (128 + its number: 130 for SIGINT, 143 for SIGTERM). With no
//! hold, a signal ends the run at once, as it would without this module.
//!
//! Hand-written rather than `signal-hook`'s flag API because the decision
//! ("exit now, or at the end of the hold") needs both the signal stream
//! (tokio's, already in the binary) and the hold count.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

static HOLDS: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);

/// Starts watching SIGTERM, SIGINT and SIGHUP on the current runtime.
pub fn install() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, number) in [
            (SignalKind::terminate(), 15),
            (SignalKind::interrupt(), 2),
            (SignalKind::hangup(), 1),
        ] {
            let Ok(mut stream) = signal(kind) else {
                continue;
            };
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    arrived(number);
                }
            });
        }
    }
}

fn arrived(number: i32) {
    if HOLDS.load(Ordering::SeqCst) == 0 {
        exit_for(number);
    }
    PENDING.store(number, Ordering::SeqCst);
    tracing::warn!(
        "{} received: finishing the token exchange in flight and saving its answer first",
        name(number)
    );
    // The hold may have ended between the check and the store.
    if HOLDS.load(Ordering::SeqCst) == 0 && PENDING.swap(0, Ordering::SeqCst) != 0 {
        exit_for(number);
    }
}

fn name(number: i32) -> &'static str {
    match number {
        15 => "SIGTERM",
        2 => "SIGINT",
        _ => "SIGHUP",
    }
}

fn exit_for(number: i32) -> ! {
    std::process::exit(128 + number)
}

/// While alive, stop signals wait (see the module doc).
#[derive(Debug)]
pub struct Hold(());

impl Hold {
    pub fn new() -> Hold {
        HOLDS.fetch_add(1, Ordering::SeqCst);
        Hold(())
    }
}

impl Default for Hold {
    fn default() -> Self {
        Hold::new()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if HOLDS.fetch_sub(1, Ordering::SeqCst) == 1 {
            let pending = PENDING.swap(0, Ordering::SeqCst);
            if pending != 0 {
                tracing::warn!(
                    "stopping for the {} received during the token exchange (its answer is saved, or kept in the recovery file named above)",
                    name(pending)
                );
                exit_for(pending);
            }
        }
    }
}
