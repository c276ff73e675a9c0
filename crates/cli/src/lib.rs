//! The berth binaries' command-line layers. All behaviour lives in the library crates.

pub mod runtime_cli;
