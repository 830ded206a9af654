//! `Magma(model).generate(...)` (`magma generate`) for small models on the CPU.

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::{DType, Device};
use magma_model::{GenerationParams, MagmaPipeline};
use pyo3::prelude::*;

use crate::convert::{image_from_py, to_py, value_error};
use crate::error::OrPyErr;

/// A Magma model loaded from a local folder (config.json, safetensors, tokenizer).
///
/// `generate` releases the GIL, so several Python threads can use one model.
#[pyclass(module = "magma_rs", frozen)]
pub struct Magma {
    pipeline: MagmaPipeline,
    dir: PathBuf,
}

fn dtype(name: Option<&str>, device: &Device) -> PyResult<DType> {
    Ok(match name {
        None => magma_model::device::default_dtype(device),
        Some("f32") => DType::F32,
        Some("bf16") => DType::BF16,
        Some("f16") => DType::F16,
        Some(other) => {
            return Err(value_error(
                "dtype",
                format!("unknown dtype {other:?}; expected f32, bf16 or f16"),
            ))
        }
    })
}

#[pymethods]
impl Magma {
    /// Loads the model in `model` (a folder); `quantize` ("q4k", "q5k", "q6k", "q8_0") quantizes
    /// the linear layers while loading.
    #[new]
    #[pyo3(signature = (model, *, dtype=None, device="cpu", quantize=None))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        dtype: Option<&str>,
        device: &str,
        quantize: Option<&str>,
    ) -> PyResult<Self> {
        if !model.is_dir() {
            return Err(crate::convert::io_error(
                std::io::ErrorKind::NotFound,
                format!("{}: no such model folder", model.display()),
            ));
        }
        let device = magma_model::device::parse_device(device).or_py_err()?;
        let dtype = self::dtype(dtype, &device)?;
        let format = quantize
            .map(|q| q.parse::<magma_model::quant::QuantFormat>())
            .transpose()
            .or_py_err()?;
        let pipeline = py
            .detach(|| match format {
                Some(format) => {
                    magma_model::quant::load_quantized_pipeline(&model, format, &device)
                }
                None => MagmaPipeline::load(&model, dtype, &device),
            })
            .or_py_err()?;
        Ok(Self {
            pipeline,
            dir: model,
        })
    }

    /// Answers `prompt` (`<image>` marks where each image goes; default: all images first).
    ///
    /// `images`: numpy (H, W, 3) uint8 arrays, PIL images or paths. Returns a dict with `text`,
    /// `generated_ids`, `prompt_ids`, `finish_reason` and `timings` (what
    /// `magma generate --json` prints). `on_token(text_delta, token_id)` is called for every
    /// generated token (streaming); an exception raised there stops generation and propagates.
    #[pyo3(signature = (prompt, images=None, *, system=None, max_new_tokens=128, temperature=0.0,
        top_p=None, top_k=None, seed=0, repetition_penalty=1.0, stop=None, on_token=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate<'py>(
        &self,
        py: Python<'py>,
        prompt: &str,
        images: Option<Vec<Bound<'py, PyAny>>>,
        system: Option<&str>,
        max_new_tokens: usize,
        temperature: f64,
        top_p: Option<f64>,
        top_k: Option<usize>,
        seed: u64,
        repetition_penalty: f64,
        stop: Option<Vec<String>>,
        on_token: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut rgb = Vec::new();
        for (i, image) in images.unwrap_or_default().iter().enumerate() {
            let what = format!("images[{i}]");
            let is_path =
                image.is_instance_of::<pyo3::types::PyString>() || image.hasattr("__fspath__")?;
            rgb.push(if is_path {
                let path: PathBuf = image.extract()?;
                self.pipeline.processor().load_image(&path).or_py_err()?
            } else {
                image_from_py(image, &what)?
            });
        }
        let params = GenerationParams {
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            repetition_penalty,
            stop_token_ids: Vec::new(),
            stop_strings: stop.unwrap_or_default(),
        };
        // A callback error stops generation and is raised once the GIL is back.
        let mut callback_error: Option<PyErr> = None;
        let output = py.detach(|| {
            self.pipeline
                .generate(prompt, &rgb, system, &params, &mut |id, delta| {
                    let Some(callback) = &on_token else {
                        return ControlFlow::Continue(());
                    };
                    match Python::attach(|py| callback.call1(py, (delta, id)).map(drop)) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            callback_error = Some(e);
                            ControlFlow::Break(())
                        }
                    }
                })
        });
        if let Some(e) = callback_error {
            return Err(e);
        }
        let output = output.or_py_err()?;
        to_py(py, &output)
    }

    /// The model folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.dir.clone()
    }

    fn __repr__(&self) -> String {
        format!("Magma({:?})", self.dir.display().to_string())
    }
}
