//! `--max-forks`: the programs running, counted from the upgrade request
//! that starts one until its process group is gone, and their groups, so
//! that a stopping server can end them all.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::process::signal_group;

/// The programs of one server.
#[derive(Debug)]
pub struct Forks {
    max: usize,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    live: usize,
    next: u64,
    /// Process groups of the live programs that have one yet.
    groups: HashMap<u64, i32>,
}

/// One program's place among the `--max-forks`; dropping it gives the
/// place back.
#[derive(Debug)]
pub struct Fork {
    forks: Arc<Forks>,
    id: u64,
}

impl Forks {
    /// Room for `max` programs at once.
    pub fn new(max: usize) -> Arc<Forks> {
        Arc::new(Forks { max, state: Mutex::default(), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more program, or `None` when `max` run already.
    pub fn reserve(self: &Arc<Self>) -> Option<Fork> {
        let mut state = self.lock();
        if state.live >= self.max {
            return None;
        }
        state.live += 1;
        state.next += 1;
        Some(Fork { forks: Arc::clone(self), id: state.next })
    }

    /// Programs running (or starting) now.
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// Waits up to `timeout` for every program to be gone; true if they are.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while state.live > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        true
    }

    /// SIGKILL to the group of every program still registered.
    pub fn kill_all(&self) {
        let groups: Vec<i32> = self.lock().groups.values().copied().collect();
        for pgid in groups {
            log::warn!("exec: SIGKILL to process group {pgid}, still there at shutdown");
            let _ = signal_group(pgid, libc::SIGKILL);
        }
    }
}

impl Fork {
    /// Records the program's process group.
    pub fn set_group(&self, pgid: i32) {
        self.forks.lock().groups.insert(self.id, pgid);
    }
}

impl Drop for Fork {
    fn drop(&mut self) {
        {
            let mut state = self.forks.lock();
            state.groups.remove(&self.id);
            state.live -= 1;
        }
        self.forks.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_given_back() {
        let forks = Forks::new(2);
        let a = forks.reserve().unwrap();
        let b = forks.reserve().unwrap();
        assert!(forks.reserve().is_none());
        assert!(!forks.wait_idle(Duration::from_millis(1)));
        drop(a);
        let c = forks.reserve().unwrap();
        drop((b, c));
        assert_eq!(forks.live(), 0);
        assert!(forks.wait_idle(Duration::ZERO));
    }
}
