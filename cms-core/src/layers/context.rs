use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Call, Interceptor};
use crate::Result;

/// Names the operation and the provider in every error that passes, so messages read
/// "create instance on provider `onprem`: …". The outermost layer.
#[derive(Clone, Debug)]
pub struct ContextLayer {
    provider: String,
}

impl ContextLayer {
    /// Errors will name `provider`.
    pub fn new(provider: impl Into<String>) -> Self {
        ContextLayer {
            provider: provider.into(),
        }
    }
}

impl Interceptor for ContextLayer {
    fn intercept<'a, T, F>(&'a self, call: Call, run: F) -> BoxFuture<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn() -> BoxFuture<'a, Result<T>> + Send + Sync + 'a,
    {
        async move {
            run()
                .await
                .map_err(|e| e.with_operation(call.op).with_provider(&self.provider))
        }
        .boxed()
    }
}
