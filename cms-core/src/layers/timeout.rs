use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Call, Interceptor};
use crate::{Error, ErrorKind, Result};

/// Bounds every call in time; a call that runs over answers `Timeout` (temporary).
///
/// A create that timed out may still have happened: the retry layer repeats it only
/// when it carries a client token.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Calls taking longer than `limit` fail.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl Interceptor for TimeoutLayer {
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        let limit = self.limit;
        async move {
            match tokio::time::timeout(limit, run()).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {limit:?}"),
                )
                .with_operation(call.op)),
            }
        }
        .boxed()
    }
}
