//! The idle worker's sleeps (the wait between polls, the heartbeat
//! interval) on a kernel timer of their own, so that each wakes the process
//! once, at its deadline.
//!
//! Tokio's timer wheel wakes its thread at the boundary of each of its
//! levels on the way to a far deadline, then files the timer a level lower:
//! three wakeups for a 10-second sleep, where the idle worker has nothing
//! else to do. A Linux `timerfd` on the runtime's reactor wakes it once.
//! Where there is no timerfd, or the kernel refuses one, it is tokio's
//! sleep.

use std::time::Duration;

/// Sleeps for `duration` (on the monotonic clock, as `tokio::time::sleep`).
pub async fn sleep(duration: Duration) {
    #[cfg(target_os = "linux")]
    if let Ok(timer) = timerfd::Timer::arm(duration) {
        timer.expired().await;
        return;
    }
    tokio::time::sleep(duration).await;
}

#[cfg(target_os = "linux")]
mod timerfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::time::Duration;

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A one-shot timerfd, armed, on the runtime's reactor.
    pub struct Timer(AsyncFd<OwnedFd>);

    impl Timer {
        pub fn arm(duration: Duration) -> io::Result<Timer> {
            // SAFETY: timerfd_create(2) takes no pointers; a non-negative
            // result is a new descriptor that nothing else owns.
            let fd = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is open and owned by nothing else (above).
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // A zero expiry would disarm the timer: the least is 1 ns.
            let duration = duration.max(Duration::from_nanos(1));
            let expiry = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: libc::time_t::try_from(duration.as_secs())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
                    tv_nsec: duration.subsec_nanos() as libc::c_long,
                },
            };
            // SAFETY: `expiry` is a valid itimerspec for the call's length;
            // the old value is not asked for (null).
            if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &expiry, std::ptr::null_mut()) }
                != 0
            {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the OwnedFd is open and moves into the AsyncFd, which
            // keeps it, and so the same descriptor, until it is dropped.
            let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
            Ok(Timer(registered?))
        }

        /// Returns once the timer has expired.
        pub async fn expired(&self) {
            loop {
                // An error here means the runtime is shutting down.
                let Ok(mut ready) = self.0.readable().await else {
                    return;
                };
                let mut expirations = 0u64;
                // SAFETY: reads at most 8 bytes into a live u64.
                let read = unsafe {
                    libc::read(
                        self.0.as_raw_fd(),
                        std::ptr::addr_of_mut!(expirations).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
                if read == 8 {
                    return;
                }
                ready.clear_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn sleeps_for_the_duration_and_not_much_longer() {
        for duration in [
            Duration::ZERO,
            Duration::from_millis(30),
            Duration::from_millis(120),
        ] {
            let started = Instant::now();
            sleep(duration).await;
            let slept = started.elapsed();
            // A loaded machine may be late by a little; never early.
            assert!(slept >= duration, "{duration:?} asked, {slept:?} slept");
            assert!(
                slept < duration + Duration::from_secs(1),
                "{duration:?} asked, {slept:?} slept"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_timerfd_is_armed_on_linux() {
        let timer = timerfd::Timer::arm(Duration::from_millis(10)).expect("a timerfd");
        let started = Instant::now();
        timer.expired().await;
        assert!(started.elapsed() >= Duration::from_millis(10));
    }

    #[tokio::test]
    async fn an_hour_long_sleep_does_not_end_early() {
        let sleeping = sleep(Duration::from_secs(3600));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sleeping)
                .await
                .is_err(),
            "an hour's sleep ended within 20 ms"
        );
    }
}
