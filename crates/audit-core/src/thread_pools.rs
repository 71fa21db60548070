//! Connections owned by the thread that uses them: one pool per thread, opened on
//! first use.
//!
//! A tokio-postgres connection's I/O runs as a task on the runtime that opened it, and
//! each HTTP worker is a runtime of its own on a thread of its own. With one pool for
//! the process, a worker's query went through whichever thread had opened that
//! connection (often the main thread, whose background tasks opened the first ones):
//! two wake-ups of another thread per query. Measured on 10-event GETs over two
//! connections: p50 150 us with the shared pool, 60-70 us with a pool per thread.
//!
//! Each thread may open up to `postgres.pool_size` connections, as many as the one
//! shared pool allowed: a worker that holds most of the clients must not wait for
//! connections another worker leaves idle. (Sharing `pool_size` out among the workers
//! was tried: two of four benchmark runs then had a few requests wait out
//! `acquire_timeout_ms` under full read load, and answer 503.)

use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use deadpool_postgres::{Pool, Status};

use crate::config::PostgresSettings;
use crate::database::{DatabaseError, build_pool};

/// The pools of one set of settings, one per thread that asks.
#[derive(Clone, Debug)]
pub struct ThreadPools {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: PostgresSettings,
    /// The pool `new` built to check the settings: the first thread's, and any
    /// thread's should building another ever fail.
    first: Pool,
    /// Every pool opened so far, for the process-wide status and for closing them.
    pools: Mutex<Vec<Pool>>,
}

impl Drop for Shared {
    /// The settings were replaced (a reload) or the server stops: no thread may open
    /// more connections with these, and idle ones close now.
    fn drop(&mut self) {
        let pools = self.pools.get_mut().unwrap_or_else(PoisonError::into_inner);
        for pool in pools.iter() {
            pool.close();
        }
    }
}

thread_local! {
    /// This thread's pool of each live `ThreadPools`; entries of dropped ones are
    /// pruned on the next lookup.
    static POOLS: RefCell<Vec<(Weak<Shared>, Pool)>> = const { RefCell::new(Vec::new()) };
}

impl ThreadPools {
    /// Pools of `settings`, each of up to `pool_size` connections. Builds one pool at
    /// once, so that settings that cannot make a pool fail here, not on the first
    /// request.
    pub fn new(settings: &PostgresSettings) -> Result<Self, DatabaseError> {
        let first = build_pool(settings)?;
        Ok(Self {
            shared: Arc::new(Shared {
                settings: settings.clone(),
                first,
                pools: Mutex::default(),
            }),
        })
    }

    /// The calling thread's pool, opened on its first call (connections open lazily).
    pub fn current(&self) -> Pool {
        POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            pools.retain(|(owner, _)| owner.strong_count() > 0);
            let mine = Arc::downgrade(&self.shared);
            if let Some((_, pool)) = pools.iter().find(|(owner, _)| owner.ptr_eq(&mine)) {
                return pool.clone();
            }
            let mut opened = self.lock();
            // The settings built a pool in `new`, so they build another; should they
            // not, this thread shares the first one rather than fail.
            let pool = match opened.is_empty() {
                true => self.shared.first.clone(),
                false => {
                    build_pool(&self.shared.settings).unwrap_or_else(|_| self.shared.first.clone())
                }
            };
            opened.push(pool.clone());
            drop(opened);
            pools.push((mine, pool.clone()));
            pool
        })
    }

    /// Connections of every thread: opened, idle, and callers waiting for one; the
    /// largest size is the configured `pool_size`.
    pub fn status(&self) -> Status {
        self.lock().iter().map(Pool::status).fold(
            Status {
                max_size: self.shared.settings.pool_size,
                size: 0,
                available: 0,
                waiting: 0,
            },
            |total, status| Status {
                size: total.size + status.size,
                available: total.available + status.available,
                waiting: total.waiting + status.waiting,
                ..total
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pool>> {
        (self.shared.pools.lock()).unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pool_size: usize) -> PostgresSettings {
        PostgresSettings {
            pool_size,
            ..PostgresSettings::default()
        }
    }

    #[test]
    fn each_thread_gets_a_pool_of_its_own_and_keeps_it() {
        let pools = ThreadPools::new(&settings(8)).unwrap();
        let here = pools.current();
        assert_eq!(here.status().max_size, 8);
        let again = pools.current();
        let there = std::thread::scope(|scope| scope.spawn(|| pools.current()).join().unwrap());
        assert_eq!(there.status().max_size, 8);
        // The same pool twice on one thread, another on the other: two pools in all.
        assert_eq!(pools.lock().len(), 2);
        drop((here, again, there));
    }

    #[test]
    fn dropped_settings_close_their_pools_and_leave_the_thread() {
        let first = ThreadPools::new(&settings(2)).unwrap();
        let pool = first.current();
        drop(first);
        assert!(pool.is_closed());
        let second = ThreadPools::new(&settings(2)).unwrap();
        second.current();
        POOLS.with(|pools| assert_eq!(pools.borrow().len(), 1));
    }
}
