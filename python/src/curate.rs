//! Video curation (`magma data shots`, `magma data clip-score`): PySceneDetect-equal shot
//! detection and the CLIP score of Magma's filter.

use std::path::PathBuf;

use image::DynamicImage;
use magma_data::curate::clip::{score_frames, ClipScorer as RustClipScorer};
use magma_data::curate::shots::{DetectorKind, Downscale, FilterMode, ShotConfig, Weights};
use magma_traces::mp4::FrameRate;
use numpy::ndarray::Array2;
use numpy::PyArray2;
use pyo3::prelude::*;

use crate::convert::{image_from_py, io_error, to_py, value_error};

/// magma-data reports a missing input as a plain message: check first, so that Python gets a
/// `FileNotFoundError` naming the path.
fn require_exists(path: &std::path::Path) -> PyResult<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(io_error(
            std::io::ErrorKind::NotFound,
            format!("{}: no such file or folder", path.display()),
        ))
    }
}
use crate::error::OrPyErr;

/// Splits a video (MP4, a frame folder, other formats with the `video` build) into shots as
/// PySceneDetect does; options, defaults and the returned dict are those of
/// `magma data shots --json` (`scenes` is empty when there is no cut).
#[pyfunction]
#[pyo3(signature = (path, *, detector="content", threshold=None, min_scene_len=15, luma_only=false,
    weights=None, kernel_size=None, filter_mode="merge", window_width=2, min_content_val=15.0,
    downscale=None, psd_06=false, fps=None, stats=false))]
#[allow(clippy::too_many_arguments)]
pub fn detect_shots<'py>(
    py: Python<'py>,
    path: PathBuf,
    detector: &str,
    threshold: Option<f64>,
    min_scene_len: usize,
    luma_only: bool,
    weights: Option<[f64; 4]>,
    kernel_size: Option<usize>,
    filter_mode: &str,
    window_width: usize,
    min_content_val: f64,
    downscale: Option<u32>,
    psd_06: bool,
    fps: Option<(u32, u32)>,
    stats: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let detector = match detector {
        "content" => DetectorKind::Content,
        "adaptive" => DetectorKind::Adaptive,
        other => {
            return Err(value_error(
                "detector",
                format!("unknown detector {other:?}; expected content or adaptive"),
            ))
        }
    };
    let filter_mode = match filter_mode {
        "merge" => FilterMode::Merge,
        "suppress" => FilterMode::Suppress,
        other => {
            return Err(value_error(
                "filter_mode",
                format!("unknown mode {other:?}; expected merge or suppress"),
            ))
        }
    };
    let mut config = ShotConfig {
        detector,
        min_scene_len,
        kernel_size,
        filter_mode,
        window_width,
        min_content_val,
        record_stats: stats,
        ..Default::default()
    };
    match (detector, threshold) {
        (DetectorKind::Content, Some(t)) => config.threshold = t,
        (DetectorKind::Adaptive, Some(t)) => config.adaptive_threshold = t,
        _ => {}
    }
    if let Some([delta_hue, delta_sat, delta_lum, delta_edges]) = weights {
        config.weights = Weights {
            delta_hue,
            delta_sat,
            delta_lum,
            delta_edges,
        };
    }
    if luma_only {
        config.weights = Weights::LUMA_ONLY;
    }
    config.downscale = match (downscale, psd_06) {
        (Some(_), true) => return Err(value_error("downscale", "excludes psd_06")),
        (Some(f), false) => Downscale::Factor(f),
        (None, true) => Downscale::Auto06,
        (None, false) => Downscale::Auto07,
    };
    let rate = match fps {
        Some((num, den)) => Some(
            FrameRate::new(num.into(), den.into())
                .ok_or_else(|| value_error("fps", "must be positive"))?,
        ),
        None => None,
    };
    require_exists(&path)?;
    let shots = py
        .detach(|| magma_data::curate::video::detect_shots(&path, &config, rate, &mut |_, _| {}))
        .or_py_err()?;
    to_py(py, &shots)
}

/// The frames Magma's CLIP filter scores in a window of `frames` frames from `start`:
/// `min(4, n)` at `linspace(start, start + n - 1)` truncated, padded by repeating the last.
#[pyfunction]
pub fn clip_frames(start: usize, frames: usize) -> Vec<usize> {
    score_frames(start, frames)
}

/// An image for CLIP. PIL images with transparency stay RGBA: CLIP's preprocessing resizes
/// before it drops alpha, and resizing weights colours by alpha.
fn clip_image(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<DynamicImage> {
    let has_alpha = obj
        .getattr("mode")
        .and_then(|m| m.extract::<String>())
        .is_ok_and(|m| matches!(m.as_str(), "RGBA" | "LA" | "PA" | "La" | "RGBa"));
    if !has_alpha {
        return image_from_py(obj, what).map(DynamicImage::ImageRgb8);
    }
    let rgba = obj.call_method1("convert", ("RGBA",))?;
    let (width, height): (u32, u32) = rgba.getattr("size")?.extract()?;
    let bytes: Vec<u8> = rgba.call_method0("tobytes")?.extract()?;
    image::RgbaImage::from_raw(width, height, bytes)
        .map(DynamicImage::ImageRgba8)
        .ok_or_else(|| value_error(what, "PIL returned a buffer that does not match its size"))
}

/// CLIP scores as Magma's curation filter computes them: the cosine of L2-normalised image and
/// text embeddings (OpenAI `clip` preprocessing and tokenizer, truncation to 77 tokens).
#[pyclass(module = "magma_rs", frozen)]
pub struct ClipScorer {
    inner: RustClipScorer,
}

#[pymethods]
impl ClipScorer {
    /// Loads a Hugging Face CLIP folder (config.json, model.safetensors, merges.txt), CPU.
    #[new]
    fn new(py: Python<'_>, model: PathBuf) -> PyResult<Self> {
        require_exists(&model)?;
        let inner = py.detach(|| RustClipScorer::load(&model)).or_py_err()?;
        Ok(Self { inner })
    }

    /// The (images, texts) cosine matrix as float32; images are numpy (H, W, 3) uint8 or PIL.
    fn score<'py>(
        &self,
        py: Python<'py>,
        images: Vec<Bound<'py, PyAny>>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let images = images
            .iter()
            .enumerate()
            .map(|(i, im)| clip_image(im, &format!("images[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let cosine = py
            .detach(|| self.inner.cosine(&images, &texts))
            .or_py_err()?;
        let (rows, cols) = (cosine.len(), texts.len());
        let flat: Vec<f32> = cosine.into_iter().flatten().collect();
        let array =
            Array2::from_shape_vec((rows, cols), flat).map_err(|e| value_error("cosine", e))?;
        Ok(PyArray2::from_owned_array(py, array))
    }
}
