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

//!
//! `watch` runs in [`Mode::Report`] instead: nothing exits; signals are
//! counted ([`stop_requested`], [`hangups`]) and wake [`changed`], and
//! the loop stops (exit 0) once the exchange in flight and its save are done.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Notify;

static HOLDS: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicI32 = AtomicI32::new(0);
static REPORT: AtomicBool = AtomicBool::new(false);
static STOP: AtomicI32 = AtomicI32::new(0);
static HANGUPS: AtomicU64 = AtomicU64::new(0);

/// What a stop signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Exit 128 + n at once, or when the token exchange in flight is saved.
    Exit,
    /// Only note it and wake [`changed`] (the long-running `watch`).
    Report,
}

fn notify() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Resolves when a signal arrives in [`Mode::Report`] (one waiter).
pub async fn changed() {
    notify().notified().await
}

/// The stop signal received in [`Mode::Report`] (15 or 2), if any.
pub fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

/// How many SIGHUPs were received in [`Mode::Report`] so far: each loop
/// (`watch` runs one per org) compares it with the count it last acted on.
pub fn hangups() -> u64 {
    HANGUPS.load(Ordering::SeqCst)
}

/// The signal's name.
pub fn signal_name(number: i32) -> &'static str {
    name(number)
}

/// Starts watching SIGTERM, SIGINT and SIGHUP on the current runtime.
pub fn install(mode: Mode) {
    REPORT.store(mode == Mode::Report, Ordering::SeqCst);
    // A thread of its own rather than tokio's signal streams: a signal must
    // be acted on even while the runtime's one thread is blocked (waiting
    // for the person in `setup-oauth`, a file lock, a hook). Installed once
    // per process (in-process callers may run several commands).
    static INSTALLED: OnceLock<()> = OnceLock::new();
    #[cfg(unix)]
    INSTALLED.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
            Ok(mut signals) => {
                let spawned = std::thread::Builder::new()
                    .name("webex-token-signals".into())
                    .spawn(move || {
                        for number in signals.forever() {
                            arrived(number);
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("could not watch for stop signals: {e}");
                }
            }
            Err(e) => tracing::warn!("could not watch for stop signals: {e}"),
        }
    });
}

fn arrived(number: i32) {
    if REPORT.load(Ordering::SeqCst) {
        if number == 1 {
            HANGUPS.fetch_add(1, Ordering::SeqCst);
        } else {
            STOP.store(number, Ordering::SeqCst);
        }
        notify().notify_one();
        return;
    }
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
        if HOLDS.fetch_sub(1, Ordering::SeqCst) == 1 && !REPORT.load(Ordering::SeqCst) {
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
