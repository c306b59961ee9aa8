//! A clean stop on Ctrl-C (SIGINT) or SIGTERM: the handlers only set a process-wide flag; the
//! coordinator (or a scenario's own loop) looks at it, ends the run early, and the report is
//! still printed and written.
//!
//! Worker processes install the same handlers and never look at the flag: a Ctrl-C at a terminal
//! reaches the whole process group, and a child must not die before its parent tells it to
//! finish and collects its report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag the signal handlers set.
pub fn flag() -> &'static Arc<AtomicBool> {
    REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    flag().load(Ordering::Acquire)
}

/// Sets the flag on SIGINT and SIGTERM instead of dying.
pub fn install() -> std::io::Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag().clone())?;
    }
    Ok(())
}
