//! `magma serve`: the OpenAI-compatible multimodal server with the robot `/act` endpoint.

use anyhow::Context;
use candle_core::DType;
use magma_serve::{ServeConfig, Server};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Serve a Magma model over HTTP: OpenAI `POST /v1/chat/completions` (images as data URLs,
/// streaming), OpenVLA `POST /act`, `POST /v1/som`, `GET /v1/models`, `GET /health`, `GET /metrics`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub source: crate::embedded::ModelSource,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer <KEY>` on every route but /health.
    #[arg(long, env = "MAGMA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Answer /act failures like OpenVLA's deploy server: HTTP 200 with the JSON string "error".
    #[arg(long)]
    pub openvla_compat_errors: bool,
    /// Model id reported by /v1/models and in responses (default: the model folder's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Most requests decoded together in one engine step.
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Most requests waiting for the engine; more get HTTP 429.
    #[arg(long, default_value_t = 256)]
    pub queue_size: usize,
    /// Per-request time limit in seconds, queueing included (HTTP 504 after it).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 32)]
    pub max_body_mib: usize,
    /// Seconds for a request's header to arrive complete (slower clients are disconnected).
    #[arg(long, default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// Most images in one chat request.
    #[arg(long, default_value_t = 8)]
    pub max_images: usize,
    /// Most pixels per image, checked before decoding (decompression bombs are refused).
    #[arg(long, default_value_t = 4096 * 4096)]
    pub max_image_pixels: u64,
    /// Fetch `http(s)://` image URLs in chat requests (off: only data: URLs are accepted).
    /// The server then makes requests on clients' behalf: enable it only for trusted clients.
    #[arg(long)]
    pub allow_remote_images: bool,
    /// Hosts that --allow-remote-images may fetch from although they resolve to loopback,
    /// private, link-local or other non-public addresses (refused otherwise, also after a
    /// redirect): comma-separated host names or IP addresses, e.g. `images.lan,10.0.0.7`.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOSTS",
        requires = "allow_remote_images"
    )]
    pub allow_remote_hosts: Vec<String>,
    /// Largest remote image in MiB (counted while downloading) with --allow-remote-images.
    #[arg(long, default_value_t = 16)]
    pub remote_image_max_mib: u64,
    /// Time limit in seconds for fetching one remote image with --allow-remote-images.
    #[arg(long, default_value_t = 10)]
    pub remote_image_timeout_secs: u64,
    /// `max_tokens` of chat requests that give none (capped by the context left).
    #[arg(long, default_value_t = 512)]
    pub default_max_tokens: usize,
    /// Device: `cpu`, `cuda` or `cuda:N` (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype (default: f32 on the CPU, bf16 on a GPU).
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
    /// Print one JSON line `{"listening": "http://…", "model": …}` on stdout once ready.
    #[arg(long)]
    pub json: bool,
}

/// Weight and activation dtype.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    Bf16,
    F16,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model_dir: PathBuf = args.source.dir()?;
    let mut config = ServeConfig::new(model_dir.clone());
    if let Some(name) = args
        .served_model_name
        .clone()
        .or_else(|| args.source.model.clone())
    {
        config.model_name = name;
    } else {
        config.model_name = "magma-tiny-crop".into();
    }
    config.device = magma_model::device::parse_device(&args.device)?;
    config.dtype = match args.dtype {
        Some(Dtype::F32) => DType::F32,
        Some(Dtype::Bf16) => DType::BF16,
        Some(Dtype::F16) => DType::F16,
        None => magma_model::device::default_dtype(&config.device),
    };
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    config.openvla_compat_errors = args.openvla_compat_errors;
    config.engine.max_batch = args.max_batch.max(1);
    config.engine.queue_capacity = args.queue_size.max(1);
    config.limits.request_timeout = Duration::from_secs(args.timeout_secs.max(1));
    config.limits.max_body_bytes = args.max_body_mib.saturating_mul(1 << 20);
    config.limits.header_timeout = Duration::from_secs(args.header_timeout_secs.max(1));
    config.limits.max_images = args.max_images;
    config.limits.max_image_pixels = args.max_image_pixels;
    config.limits.default_max_tokens = args.default_max_tokens;
    config.limits.remote_images =
        args.allow_remote_images
            .then(|| magma_serve::RemoteImageLimits {
                max_bytes: args.remote_image_max_mib.saturating_mul(1 << 20),
                timeout: Duration::from_secs(args.remote_image_timeout_secs.max(1)),
                allow_hosts: args.allow_remote_hosts.clone(),
                ..Default::default()
            });
    let addr = SocketAddr::new(args.host, args.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        eprintln!("loading {} ...", model_dir.display());
        let server = Server::bind(config.clone(), addr)
            .await
            .with_context(|| format!("starting the server on {addr}"))?;
        let url = format!("http://{}", server.local_addr());
        if args.json {
            println!(
                "{}",
                serde_json::json!({"listening": url, "model": config.model_name})
            );
        } else {
            eprintln!(
                "magma serve: {} on {url} (OpenAI base URL {url}/v1); Ctrl-C to stop",
                config.model_name
            );
        }
        if config.api_key.is_none() && !args.host.is_loopback() {
            eprintln!("warning: listening on {} without --api-key", args.host);
        }
        server.run(magma_serve::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}
