//! Magma's training data: records, converters, curation, jobs.
//!
//! * [`record`]: the [`Record`](record::Record) every source becomes (conversation, media, marks,
//!   traces, actions, provenance) with deterministic ids.
//! * [`stage`]: the [`Stage`](stage::Stage) API: a function over one manifest item that emits
//!   samples and reports skipped records instead of failing.

pub mod convert;
pub mod curate;
pub mod error;
pub mod example;
pub mod index;
pub mod job;
pub mod magma_json;
pub mod pipeline;
pub mod record;
pub mod render;
pub mod stage;
pub mod tfrecord;
pub mod webdataset;

pub use error::{DataError, Result};
