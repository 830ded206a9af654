//! Trace-of-Mark (ToM) for Magma: video frames → tracked points → camera-motion removal →
//! mark selection → the marked first frame and the ToM (or SoM) conversation record.
//!
//! The stages follow Magma's training-data code (`data/conversations.py`,
//! `data/openx_magma/data_utils.py`) and the released Alg. 2 demo (`tools/som_tom/demo.py`); each
//! module says which rule it reproduces. The default tracker is a pyramidal Lucas–Kanade
//! ([`lk::LucasKanade`]) behind the [`tracker::Tracker`] trait, so a learned CoTracker-class
//! tracker can be added without touching the rest.
//!
//! ```
//! use magma_traces::lk::LucasKanade;
//! use magma_traces::pipeline::{run, TomConfig};
//! use magma_traces::synthetic::{Scene, SceneKind};
//!
//! let scene = Scene::generate(SceneKind::PanObjects, 192, 144, 8, 1);
//! let config = TomConfig { task: "push the discs".into(), ..Default::default() };
//! let result = run(&scene.frames, &LucasKanade::default(), &config, &|_| {})?;
//! println!("{}\n{}", result.question, result.answer);
//! # Ok::<(), magma_traces::TracesError>(())
//! ```

pub mod camera;
pub mod error;
pub mod eval;
pub mod frames;
pub mod homography;
pub mod kmeans;
pub mod lk;
pub mod metrics;
pub mod mp4;
pub mod occlusion;
pub mod output;
pub mod pipeline;
pub mod pyramid;
pub mod record;
pub mod render;
pub mod select;
pub mod synthetic;
pub mod tracker;
#[cfg(feature = "video")]
pub mod video;

pub use error::{Result, TracesError};
