//! The tools of the `syncws` command, as a library so tests can drive them.
pub mod loadgen;
