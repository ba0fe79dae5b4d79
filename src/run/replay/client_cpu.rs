//! The replay's own CPU use over its run: a client that keeps the machine's cores busy sets the
//! pace itself, and the server's figures then say little about the server.
//!
//! CPU time alone under-reads a saturated client on a shared machine (it gets less CPU than it
//! wants), so the time its threads spent runnable but waiting for a core (`/proc/self/task/*/
//! schedstat`, Linux) is added to it: `demand` is how much of its cores the client wanted, which
//! other load on the machine can only raise.

use std::time::Instant;

use crate::data::artifact::schema::ClientCpu;

/// CPU seconds (user + system) this process has used so far, from `getrusage`.
fn process_cpu_s() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Seconds this process's threads have spent runnable but waiting for a core, summed over its
/// live threads; 0 where the kernel does not say (no `/proc`, no schedstat).
fn runqueue_wait_s() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// Where the run's CPU, run-queue and wall clocks started.
pub(crate) struct CpuClock {
    cpu_s: f64,
    wait_s: f64,
    wall: Instant,
}

impl CpuClock {
    pub fn start() -> Self {
        Self {
            cpu_s: process_cpu_s(),
            wait_s: runqueue_wait_s(),
            wall: Instant::now(),
        }
    }

    /// CPU, run-queue and wall time since the start, over the cores this process may use.
    pub fn reading(&self) -> ClientCpu {
        let cpu_s = (process_cpu_s() - self.cpu_s).max(0.0);
        let runqueue_wait_s = (runqueue_wait_s() - self.wait_s).max(0.0);
        let wall_s = self.wall.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let capacity = (wall_s * f64::from(cores)).max(1e-9);
        ClientCpu {
            cpu_s,
            runqueue_wait_s,
            wall_s,
            cores,
            utilization: cpu_s / capacity,
            demand: (cpu_s + runqueue_wait_s) / capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_as_cpu_time_and_a_share_of_the_cores() {
        let clock = CpuClock::start();
        let mut x = 0u64;
        let until = Instant::now() + std::time::Duration::from_millis(200);
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let r = clock.reading();
        assert!(r.cpu_s > 0.0, "{r:?}");
        assert!(r.cpu_s <= r.wall_s * f64::from(r.cores) + 0.05, "{r:?}");
        assert!(r.utilization > 0.0 && r.utilization <= 1.05, "{r:?}");
        assert!(r.demand >= r.utilization, "{r:?}");
    }
}
