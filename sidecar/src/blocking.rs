//! Blocking work: locks that survive a panicking holder, and the pool that runs locks, fsync and
//! Redis I/O off the async runtime's threads.

use crate::unavailable::Unavailable;
use std::sync::{Mutex, MutexGuard};

/// Locks a mutex; a poisoned one still holds consistent data here (every writer journals first).
/// Called only on blocking threads: never hold one across an `.await`.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs blocking work (locks, fsync, Redis I/O) off the async runtime's threads.
pub async fn blocking<T: Send + 'static, E: From<Unavailable> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| Err(Unavailable::new("the request failed").into()))
}
