//! Subcommands of the `magma` binary, one module each.
pub mod action;
pub mod som;
pub mod preprocess;
pub mod prompt;
pub mod quantize;
pub mod bench_preset;
pub mod parity;
pub mod generate;
pub mod bench;
pub mod serve;
pub mod tom;
pub mod tom_eval;
