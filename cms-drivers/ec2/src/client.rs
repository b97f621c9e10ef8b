//! Building the SDK client: endpoint, region, credentials, timeouts, no SDK retries.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use cms_core::Result;

use crate::config::{CredentialSource, Ec2Config};

/// Builds an `aws_sdk_ec2::Client` for `config`.
///
/// - Endpoint: `config.endpoint` when set (moto, a private cloud, cms's own EC2
///   frontend); otherwise AWS's endpoint for the region (or `AWS_ENDPOINT_URL_EC2`,
///   as every AWS SDK does).
/// - Credentials: the key pair given in code, else the environment variables the
///   configuration names, else the standard AWS chain (resolved lazily, on the first
///   request).
/// - Timeouts: `connect_timeout_ms` for the connection, `request_timeout_ms` for each
///   request.
/// - Retries: **off** in the SDK. cms has its own retry layer
///   ([`cms_core::layers::RetryLayer`]) that sees every error classified by this
///   driver; retrying in the SDK too would multiply attempts and hide them from the
///   layer's deadline.
/// - HTTP: the SDK's default client (hyper 1 and rustls 0.23), which speaks plain
///   `http://` too.
pub(crate) async fn build(config: &Ec2Config) -> Result<aws_sdk_ec2::Client> {
    config.validate()?;
    let source = config.credential_source(|k| std::env::var(k).ok())?;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(config.connect_timeout())
        .operation_attempt_timeout(config.request_timeout())
        .operation_timeout(config.request_timeout())
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    if let CredentialSource::Static(c) = source {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            c.session_token,
            None,
            "cms-ec2-config",
        ));
    }
    let sdk_config = loader.load().await;
    Ok(aws_sdk_ec2::Client::new(&sdk_config))
}
