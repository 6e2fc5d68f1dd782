//! The tools Tendril runs, and the one place that starts processes.

pub mod aws;
pub mod orphans;
pub mod process;
pub mod terraform;
pub mod versions;

pub use process::{run, run_to_exit, ToolCommand, ToolError, ToolOutput};
