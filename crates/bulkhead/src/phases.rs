//! Where a command's time goes: with `BULKHEAD_PHASES=1` in the environment, commands
//! that [`mark`] their phases print how long each took to stderr when `main` returns
//! (`bulkhead: phase open-store 0.412 ms`). Off, a mark costs one lock and a branch.
//! For profiling (see `bench/README.md`), not an interface.

use std::sync::Mutex;
use std::time::Instant;

struct Phases {
    last: Instant,
    done: Vec<(&'static str, f64)>,
}

static PHASES: Mutex<Option<Phases>> = Mutex::new(None);

/// Starts timing if `BULKHEAD_PHASES` is set to anything but `0` or empty.
pub fn start_from_env() {
    let on = std::env::var_os("BULKHEAD_PHASES").is_some_and(|v| !v.is_empty() && v != "0");
    if on && let Ok(mut phases) = PHASES.lock() {
        *phases = Some(Phases {
            last: Instant::now(),
            done: Vec::new(),
        });
    }
}

/// Ends the current phase, naming it, and starts the next.
pub fn mark(phase: &'static str) {
    if let Ok(mut guard) = PHASES.lock()
        && let Some(phases) = guard.as_mut()
    {
        let now = Instant::now();
        let ms = now.duration_since(phases.last).as_secs_f64() * 1000.0;
        phases.done.push((phase, ms));
        phases.last = now;
    }
}

/// Prints the phases timed so far.
pub fn report() {
    if let Ok(guard) = PHASES.lock()
        && let Some(phases) = guard.as_ref()
    {
        for (phase, ms) in &phases.done {
            eprintln!("bulkhead: phase {phase} {ms:.3} ms");
        }
    }
}
