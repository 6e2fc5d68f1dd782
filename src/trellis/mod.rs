//! Everything Tendril says to Trellis: the wire model, the HTTP client and
//! the retry policy. Nothing else in Tendril speaks HTTP to Trellis.

pub mod client;
pub mod model;
pub mod retry;

pub use client::{TrellisClient, TrellisError};
pub use model::*;
