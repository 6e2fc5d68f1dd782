//! The cloud settings a job carries: where the Azure and Google APIs are,
//! and what a GCP `wif_config` may name. Plain values; the `cloud` module uses
//! them.

use std::path::PathBuf;

/// Where Microsoft Entra and Resource Manager are.
#[derive(Debug, Clone)]
pub struct AzureEndpoints {
    pub authority: String,
    pub resource_manager: String,
}

/// Where the Google APIs are, and what a `wif_config` may name.
#[derive(Debug, Clone)]
pub struct GcpSettings {
    pub compute: String,
    pub dns: String,
    /// Hosts the token exchange and the impersonation may use besides
    /// Google's own (for tests against a local fake only).
    pub extra_allowed_hosts: Vec<String>,
    /// Directories a self-hosted worker reads subject token files from.
    pub credential_dirs: Vec<PathBuf>,
    /// Hosts a self-hosted worker fetches subject tokens from, besides
    /// loopback and the metadata servers.
    pub credential_url_hosts: Vec<String>,
}
