//! Subcommands of the `magma` binary, one module each.
pub mod action;
pub mod preprocess;
pub mod prompt;
pub mod som;
