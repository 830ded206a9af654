//! Every textual interface between Magma and the world.
//!
//! Magma writes all of its outputs as text tokens. This crate turns them into structured actions
//! and back, faithfully to the reference implementation:
//!
//! * [`robot`] — the OpenVLA-style 256-bin action tokenizer (ids `vocab - 256 ..= vocab - 1`),
//!   BOUNDS_Q99 statistics, gripper rules per embodiment, Euler → axis-angle;
//! * [`ui`] — SeeClick/SoM answers (`Coordinate: (x, y). Mark: k`), the UI agent's click
//!   resolution, AITW JSON actions, Mind2Web operations, pixel conversions;
//! * [`marks`] — Set-of-Mark and Trace-of-Mark answers on the 256 grid;
//! * [`prompts`] — the task prompts the model was trained and evaluated with.
//!
//! ```
//! use magma_actions::robot::{ActionTokenizer, StatisticsSet};
//!
//! // `tokenizer_vocab_size` from the model's config.json
//! let tok = ActionTokenizer::new(128_000)?;
//! let stats = StatisticsSet::builtin();
//! let bridge = &stats.get(Some("bridge_orig"))?.action;
//! let raw = bridge.unnormalize(&tok.decode(&[127857, 127873, 127868, 127904, 127861, 127874, 127744]))?;
//! assert_eq!(raw.len(), 7);
//! # Ok::<(), magma_actions::ActionError>(())
//! ```

mod error;
pub mod marks;
pub mod prompts;
pub mod robot;
mod scan;
pub mod ui;

pub use error::{ActionError, Result};
