//! Cloud identities: getting credentials for a job and checking them.

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod state_bucket;

/// A tool never starts with cloud credentials closer than this to expiry:
/// they are fetched again first (AWS's and Google's last an hour).
pub const MIN_REMAINING: std::time::Duration = std::time::Duration::from_secs(45 * 60);

/// A failure of a cloud provider, in the provider's words.
#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct CloudError {
    pub provider: &'static str,
    pub message: String,
}
