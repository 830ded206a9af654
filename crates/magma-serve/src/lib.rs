//! `magma serve`: an OpenAI-compatible multimodal HTTP server for Magma, plus OpenVLA's robot
//! `/act` endpoint and a Set-of-Mark endpoint.
//!
//! * `POST /v1/chat/completions` — OpenAI chat completions with `image_url` data-URL parts (and
//!   `http(s)://` URLs when [`Limits::remote_images`] allows them), streaming (server-sent events)
//!   or not.
//! * `POST /act` — OpenVLA's deploy-server body (json-numpy image, `instruction`, `unnorm_key`)
//!   answered with the un-normalised 7-DoF action as a json-numpy float64 array.
//! * `POST /v1/som` — a screenshot and boxes in, the marked screenshot (PNG) and marks out.
//! * `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text).
//!
//! One engine thread owns the model and decodes all running requests together, one token each per
//! step ([`engine`]); requests wait in a bounded queue (429 when full).
//!
//! ```no_run
//! use magma_serve::{ServeConfig, Server};
//! # async fn demo() -> Result<(), magma_serve::ServeError> {
//! let config = ServeConfig::new("models/magma-tiny-crop".into());
//! let server = Server::bind(config, "127.0.0.1:8000".parse().unwrap()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(magma_serve::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod act;
pub mod chat;
mod connection;
pub mod engine;
mod error;
pub mod metrics;
pub mod numpy;
pub mod remote;
mod routes;
mod som;

pub use engine::EngineOptions;
pub use error::ApiError;
pub use metrics::Metrics;
pub use remote::RemoteImageLimits;

use candle_core::{DType, Device};
use engine::Engine;
use magma_model::MagmaPipeline;
use magma_processor::Processor;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most images in one chat request.
    pub max_images: usize,
    /// Most pixels in one image (checked before decoding: decompression bombs are refused).
    pub max_image_pixels: u64,
    /// `max_tokens` when a chat request gives none (capped by the remaining context).
    pub default_max_tokens: usize,
    /// `max_tokens` of `/act` when the body gives none (the reference's `max_new_tokens`).
    pub act_max_tokens: usize,
    /// Per-request time limit, queueing included.
    pub request_timeout: Duration,
    /// Time for a request's header to arrive complete, from its first byte (from the connection
    /// for the first request); slower clients are disconnected.
    pub header_timeout: Duration,
    /// `http(s)://` image URLs are fetched within these limits, from public addresses and the
    /// allowed hosts only; `None` (the default) refuses them.
    pub remote_images: Option<RemoteImageLimits>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 << 20,
            max_images: 8,
            max_image_pixels: 4096 * 4096,
            default_max_tokens: 512,
            act_max_tokens: 1000,
            request_timeout: Duration::from_secs(300),
            header_timeout: Duration::from_secs(30),
            remote_images: None,
        }
    }
}

/// Everything `magma serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Model folder.
    pub model_dir: PathBuf,
    /// The model id reported by `/v1/models` and in responses.
    pub model_name: String,
    /// Compute dtype.
    pub dtype: DType,
    /// Where the model runs.
    pub device: Device,
    /// Bearer token required on every route but `/health`, if set.
    pub api_key: Option<String>,
    /// `/act` answers failures like OpenVLA's server: HTTP 200 with the JSON string `"error"`.
    pub openvla_compat_errors: bool,
    pub limits: Limits,
    pub engine: EngineOptions,
}

impl ServeConfig {
    /// Defaults for a model folder: f32 on the CPU, no API key, proper error statuses, batches of 16.
    pub fn new(model_dir: PathBuf) -> Self {
        let model_name = model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "magma".into());
        Self {
            model_dir,
            model_name,
            dtype: DType::F32,
            device: Device::Cpu,
            api_key: None,
            openvla_compat_errors: false,
            limits: Limits::default(),
            engine: EngineOptions {
                max_batch: 16,
                queue_capacity: 256,
            },
        }
    }
}

/// What can stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The model folder could not be loaded.
    #[error("cannot load the model from {dir}: {source}")]
    Model {
        dir: PathBuf,
        #[source]
        source: magma_model::ModelError,
    },
    /// The processor (tokenizer, template) could not be loaded.
    #[error("cannot load the processor from {dir}: {source}")]
    Processor {
        dir: PathBuf,
        #[source]
        source: magma_processor::ProcessorError,
    },
    /// `config.json` could not be read for the server's own fields.
    #[error("cannot read {path}: {message}")]
    Config { path: PathBuf, message: String },
    /// Binding, accepting or the engine thread failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Model facts the HTTP layer needs.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub max_positions: usize,
    /// `tokenizer_vocab_size` of config.json: the base vocabulary of the action tokenizer.
    pub action_vocab_size: Option<u32>,
    /// Stands in for the stop token the reference keeps at the end of its output ids.
    pub eos_id: u32,
}

/// Shared state of all handlers.
#[derive(Debug)]
pub(crate) struct AppState {
    pub config: ServeConfig,
    pub processor: Processor,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    pub info: ModelInfo,
    pub stats: magma_actions::robot::StatisticsSet,
    pub started: u64,
}

/// A loaded model and a bound listener, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Loads the model (on a blocking thread), starts the engine and binds `addr`.
    pub async fn bind(config: ServeConfig, addr: SocketAddr) -> Result<Self, ServeError> {
        let load_config = config.clone();
        let state = tokio::task::spawn_blocking(move || load_state(load_config))
            .await
            .map_err(|e| ServeError::Io {
                what: "model loading thread".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Io {
                what: format!("cannot listen on {addr}"),
                source,
            })?;
        Ok(Self {
            state: Arc::new(state),
            listener,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The server's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish and
    /// stops the engine once its queue is drained.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let app = routes::router(self.state.clone());
        // header time limit, and a lingering close so that a refused body's client reads the 413
        let listener = connection::GuardedListener {
            listener: self.listener,
            header_timeout: self.state.config.limits.header_timeout,
        };
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.engine.shutdown()).await;
        tracing::info!("server stopped");
        served.map_err(|source| ServeError::Io {
            what: "serving HTTP".into(),
            source,
        })
    }
}

fn load_state(config: ServeConfig) -> Result<AppState, ServeError> {
    let dir = config.model_dir.clone();
    let start = Instant::now();
    let pipeline = MagmaPipeline::load(&dir, config.dtype, &config.device).map_err(|source| {
        ServeError::Model {
            dir: dir.clone(),
            source,
        }
    })?;
    let processor = Processor::from_dir(&dir)
        .map_err(|source| ServeError::Processor {
            dir: dir.clone(),
            source,
        })?
        .with_pixel_limit(config.limits.max_image_pixels);
    let config_path = dir.join("config.json");
    let raw: serde_json::Value = std::fs::read_to_string(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        .map_err(|message| ServeError::Config {
            path: config_path.clone(),
            message,
        })?;
    let info = ModelInfo {
        max_positions: pipeline.model().config().text.max_position_embeddings,
        action_vocab_size: raw
            .get("tokenizer_vocab_size")
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u32::try_from(v).ok()),
        eos_id: pipeline.stop_ids().first().copied().unwrap_or(0),
    };
    let stats_path = dir.join("dataset_statistics.json");
    let stats = if stats_path.exists() {
        magma_actions::robot::StatisticsSet::from_file(&stats_path).map_err(|e| {
            ServeError::Config {
                path: stats_path,
                message: e.to_string(),
            }
        })?
    } else {
        magma_actions::robot::StatisticsSet::builtin()
    };
    let metrics = Arc::new(Metrics::default());
    let engine = Engine::start(pipeline, config.engine, metrics.clone()).map_err(|source| {
        ServeError::Io {
            what: "cannot start the engine thread".into(),
            source,
        }
    })?;
    tracing::info!(model = %dir.display(), load_ms = start.elapsed().as_millis() as u64, "model loaded");
    Ok(AppState {
        config,
        processor,
        engine,
        metrics,
        info,
        stats,
        started: unix_time(),
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

pub(crate) fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
