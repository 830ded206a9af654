//! `magma_rs`: the Rust pieces of magma-rs from Python (PyO3, abi3).
//!
//! This is the native extension `magma_rs._native`; the Python package `magma_rs` wraps it with
//! argument conversion (boxes from lists / numpy / dicts, PIL images) and docstrings. Long calls
//! release the GIL. Errors become `ValueError` or `OSError` (`FileNotFoundError`) with the Rust
//! message.

mod actions;
mod convert;
mod convert_records;
mod curate;
mod data;
mod error;
mod job;
mod model;
mod som;
mod tom;

use pyo3::prelude::*;

#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::actions::{
        encode_action, parse_marks, parse_ui, ActionTokenizer, RobotActionDecoder,
    };
    #[pymodule_export]
    use crate::convert_records::{convert, Records};
    #[pymodule_export]
    use crate::curate::{clip_frames, detect_shots, ClipScorer};
    #[pymodule_export]
    use crate::data::{read_shard, record_id, tom_sample, write_shard};
    #[pymodule_export]
    use crate::job::{pipeline_items, pipeline_stages, run_pipeline, work_item, StageRunner};
    #[pymodule_export]
    use crate::model::Magma;
    #[pymodule_export]
    use crate::som::{_bench_som_rust, som_json};
    #[pymodule_export]
    use crate::tom::{encode_png, frame_count, load_frames, synthetic_scene, tom};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
