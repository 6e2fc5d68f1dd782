//! Failpoints: places where a test has Tendril kill itself (SIGKILL) on
//! purpose, to show that what a kill at that very moment leaves on disk is
//! recovered. The test names the place in `TENDRIL_TEST_KILL_AT`.
//!
//! Only a debug build (the one the tests run) carries them: in a release
//! build [`kill_here`] is empty, so no setting of a shipped binary can trip
//! one.

/// Kills the process at once when `TENDRIL_TEST_KILL_AT` names `place`
/// (debug builds only).
#[cfg(debug_assertions)]
pub fn kill_here(place: &str) {
    if std::env::var_os("TENDRIL_TEST_KILL_AT").is_some_and(|wanted| wanted == place) {
        // SAFETY: kill(2) of this process; no memory is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Does nothing: a release build carries no failpoint.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn kill_here(_place: &str) {}
