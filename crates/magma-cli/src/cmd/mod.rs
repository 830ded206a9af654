//! Subcommands of the `magma` binary, one module each.
pub mod action;
