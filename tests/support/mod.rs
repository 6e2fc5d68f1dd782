//! Shared support for Tendril's integration tests: a fake Trellis control
//! plane, a real moto server guard, a driver for the compiled `tendril`
//! binary, and small helpers (free ports, scratch directories, random ids).
//!
//! Every integration test file does `mod support;` and none uses all of it,
//! hence the one module-level `dead_code` allowance.
#![allow(dead_code)]

pub mod fake_azure;
pub mod fake_gcp;
pub mod fake_lambda;
pub mod fake_postgrest;
pub mod fake_trellis;
pub mod http_fake;
pub mod moto;
pub mod tendril;
pub mod terraform;

use std::path::{Path, PathBuf};

use rand::Rng;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// the port, release it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// `len` random lowercase hex characters.
pub fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_hex(12)));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
