//! Subcommands of the `magma` binary, one module each.
pub mod action;
pub mod agent;
pub mod bench;
pub mod bench_preset;
pub mod data;
pub mod data_curate;
pub mod eval;
pub mod generate;
pub mod parity;
pub mod preprocess;
pub mod prompt;
pub mod quantize;
pub mod serve;
pub mod som;
pub mod tom;
pub mod tom_eval;
pub mod train;
