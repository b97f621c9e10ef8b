use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Semaphore;

use super::{Call, Interceptor};
use crate::Result;

/// At most `n` calls in flight at once; the others wait their turn, in order.
#[derive(Clone, Debug)]
pub struct LimitLayer {
    permits: Arc<Semaphore>,
}

impl LimitLayer {
    /// Allows `max_in_flight` concurrent calls (at least one).
    pub fn new(max_in_flight: usize) -> Self {
        LimitLayer {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Calls that could start now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

impl Interceptor for LimitLayer {
    fn intercept<'a, T, F>(&'a self, _call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let _permit = self.permits.acquire().await;
            run().await
        }
        .boxed()
    }
}
