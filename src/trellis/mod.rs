//! Everything Tendril says to Trellis: the wire model, the HTTP client, the
//! retry policy and the record of contact the health check reads. Nothing
//! else in Tendril speaks HTTP to Trellis.

pub mod client;
pub mod contact;
pub mod model;
pub mod retry;

pub use client::{TrellisClient, TrellisError};
pub use model::*;
