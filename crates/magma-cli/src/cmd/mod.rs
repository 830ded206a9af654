//! Subcommands of the `magma` binary, one module each.
