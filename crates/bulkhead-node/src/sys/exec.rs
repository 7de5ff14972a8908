//! Running a [`Confinement`] in a spawned child between `fork` and `execve`.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::Arc;

use crate::confine::Confinement;

/// Makes `command` apply `confinement` in the child right before `execve`;
/// a failure aborts the spawn with the errno of the step that failed.
pub(crate) fn confine_before_exec(command: &mut Command, confinement: Arc<Confinement>) {
    // SAFETY: `pre_exec` requires the closure to be safe to run in a child
    // forked from a possibly multi-threaded parent, i.e. to take no lock and
    // allocate nothing. The closure only calls `Confinement::apply`, which
    // by construction makes raw prctl/capset/setrlimit/landlock/seccomp calls
    // on data prepared before the fork and builds its error without the heap;
    // converting that error into `io::Error` uses `from_raw_os_error`, which
    // does not allocate either. The `Arc` is only read, never dropped, in the
    // child (the child execs or exits).
    unsafe {
        command.pre_exec(move || confinement.apply().map_err(std::io::Error::from));
    }
}
