//! How many sockets this process may hold. Every socket is a file descriptor, and a
//! process runs out of them long before it runs out of memory: a Vercel function
//! instance has 1,024 for everything, many hosts give 1,024 as the soft limit. Past the
//! limit `accept` fails with EMFILE, for the HTTP health checks and Redis reconnects as
//! much as for new sockets. So new WebSocket upgrades are refused with HTTP 503 once the
//! open sockets reach the soft `RLIMIT_NOFILE` minus [`FD_RESERVE`]; the sockets already
//! open keep working, and a socket is accepted again as soon as one closes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// File descriptors kept back from sockets: the listener, the runtime's own (epoll, event
/// and signal fds), stdio, the store's connections (a cluster holds one per node, plus
/// pub/sub), static files being served, health checks and plain HTTP requests in flight,
/// and the 503 answers themselves. 64 leaves room for all of those on a 1,024 limit
/// (960 sockets) and costs nothing on a large one.
pub const FD_RESERVE: u64 = 64;

/// The soft and hard open-files limits, if the platform tells them.
// `rlim_t` is u64 on 64-bit Linux but not on every target: keep the casts.
#[allow(clippy::unnecessary_cast)]
pub fn open_files_limits() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain syscall writing to a stack value.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    Some((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Raise the soft open-files limit to the hard one (many systems start processes at a
/// soft 1,024 under a much higher hard limit). Returns the soft limit now in force.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = open_files_limits()?;
    if soft < hard {
        let lim = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: a plain syscall reading a stack value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(soft, hard, "could not raise the open-files limit");
            return Some(soft);
        }
    }
    open_files_limits().map(|(soft, _)| soft)
}

/// Sockets that fit in `open_files` descriptors (at least one, so a tiny limit still
/// serves somebody rather than nobody).
pub fn sockets_for(open_files: u64) -> usize {
    usize::try_from(open_files.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX)
}

/// Counts the open sockets against the limit; a [`SocketPermit`] per socket.
#[derive(Debug)]
pub struct Capacity {
    limit: usize,
    open: AtomicUsize,
    refused: AtomicU64,
}

impl Capacity {
    /// At most `limit` sockets at once.
    pub fn new(limit: usize) -> Arc<Capacity> {
        Arc::new(Capacity {
            limit,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// The limit that the current soft `RLIMIT_NOFILE` allows (unlimited when the
    /// platform does not say).
    pub fn from_open_files_limit() -> Arc<Capacity> {
        let limit = open_files_limits().map_or(usize::MAX, |(soft, _)| sockets_for(soft));
        Capacity::new(limit)
    }

    /// A permit for one more socket, or `None` (counted as refused) when full.
    pub fn try_acquire(self: &Arc<Self>) -> Option<SocketPermit> {
        let taken = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.limit).then_some(n + 1));
        match taken {
            Ok(_) => Some(SocketPermit(self.clone())),
            Err(_) => {
                self.refused.fetch_add(1, Relaxed);
                None
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sockets holding a permit now (upgrading or open).
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Upgrades refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

/// One socket's place; given back when dropped (the socket's task ends).
#[derive(Debug)]
pub struct SocketPermit(Arc<Capacity>);

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_refuses_until_a_permit_is_given_back() {
        let cap = Capacity::new(2);
        let a = cap.try_acquire().unwrap();
        let _b = cap.try_acquire().unwrap();
        assert!(cap.try_acquire().is_none());
        assert_eq!((cap.open(), cap.refused()), (2, 1));
        drop(a);
        assert_eq!(cap.open(), 1);
        assert!(cap.try_acquire().is_some());
        assert_eq!(cap.open(), 1, "the temporary permit was given back");
    }

    #[test]
    fn the_reserve_comes_off_the_limit() {
        assert_eq!(sockets_for(1_024), 960);
        assert_eq!(sockets_for(100), 36);
        assert_eq!(sockets_for(10), 1, "never zero");
    }

    #[test]
    fn raising_never_lowers() {
        let (soft, _) = open_files_limits().unwrap();
        assert!(raise_open_files_limit().unwrap() >= soft);
    }
}
