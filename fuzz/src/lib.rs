//! Shared harnesses of the syncws fuzz targets: each target in
//! `fuzz_targets/` is one line calling a function here, so the checks live
//! in one place and can be read (and reused) as ordinary code.

pub mod decoder;
pub mod handshake;
pub mod inflate;
