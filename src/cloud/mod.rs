//! Cloud identities: getting credentials for a job and checking them.

pub mod aws;
pub mod azure;
pub mod gcp;

/// A failure of a cloud provider, in the provider's words.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct CloudError {
    pub provider: &'static str,
    pub message: String,
}
