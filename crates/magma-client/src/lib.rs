//! One interface to ask a Magma model about images: [`ChatPolicy`].
//!
//! The agents (`magma agent`) and the evaluation runner (`magma eval run`) both need "a model that
//! answers a prompt about some images" without caring where it runs. Two implementations:
//!
//! * [`LocalModel`]: the in-process runtime ([`magma_model::MagmaPipeline`]), any folder
//!   `magma generate` loads;
//! * [`Endpoint`]: any OpenAI-compatible `/v1/chat/completions` server (`magma serve`, vLLM, a
//!   hosted model), images sent inline as PNG data URLs.
//!
//! Both take the same [`ChatRequest`]: a user text in which each `<image>` placeholder stands for
//! the next image, as in Magma's own prompts.
//!
//! ```no_run
//! use magma_client::{ChatPolicy, ChatRequest, Endpoint};
//!
//! let mut policy = Endpoint::new("http://127.0.0.1:8000");
//! let screenshot = image::RgbImage::new(64, 64);
//! let answer = policy.answer(&ChatRequest::new("<image>\nWhere is the Sign in button?").image(screenshot))?;
//! println!("{}", answer.text);
//! # Ok::<(), magma_client::ClientError>(())
//! ```

mod endpoint;
mod local;

pub use endpoint::Endpoint;
pub use local::LocalModel;

use image::RgbImage;

/// The placeholder of one image in [`ChatRequest::text`] (Magma's `<image>`).
pub const IMAGE_PLACEHOLDER: &str = magma_processor::IMAGE_TOKEN;

/// One question to the model: a user text with `<image>` placeholders and the images they stand
/// for, in order.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// System message; `None` uses the model's default (Magma: "You are agent that can see, talk
    /// and act.").
    pub system: Option<String>,
    /// The user message; each `<image>` is replaced by the next image of [`Self::images`].
    pub text: String,
    pub images: Vec<RgbImage>,
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    pub seed: u64,
}

impl ChatRequest {
    /// A greedy request for at most 128 new tokens.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            system: None,
            text: text.into(),
            images: Vec::new(),
            max_new_tokens: 128,
            temperature: 0.0,
            seed: 0,
        }
    }

    /// Adds the image for the next `<image>` placeholder.
    pub fn image(mut self, image: RgbImage) -> Self {
        self.images.push(image);
        self
    }

    pub fn max_new_tokens(mut self, n: usize) -> Self {
        self.max_new_tokens = n;
        self
    }

    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = Some(system.into());
        self
    }

    pub fn sampling(mut self, temperature: f64, seed: u64) -> Self {
        self.temperature = temperature;
        self.seed = seed;
        self
    }

    /// Checks that every image has a placeholder and every placeholder an image.
    fn check_placeholders(&self) -> Result<(), ClientError> {
        let placeholders = self.text.matches(IMAGE_PLACEHOLDER).count();
        if placeholders != self.images.len() {
            return Err(ClientError::Request(format!(
                "the text has {placeholders} `{IMAGE_PLACEHOLDER}` placeholder(s) but {} image(s) were given",
                self.images.len()
            )));
        }
        Ok(())
    }
}

/// The model's reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatAnswer {
    pub text: String,
    /// `stop`, `length`, … as the OpenAI API names it.
    pub finish_reason: String,
    /// Wall time of the call (for an endpoint, including the network).
    pub elapsed_ms: f64,
}

/// Anything that answers [`ChatRequest`]s: the local runtime or a remote endpoint.
pub trait ChatPolicy {
    fn answer(&mut self, request: &ChatRequest) -> Result<ChatAnswer, ClientError>;
    /// A short description for logs and reports (`local:/path`, `endpoint:http://…`).
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(String),
    #[error(transparent)]
    Model(#[from] magma_model::ModelError),
    #[error("endpoint {url}: {message}")]
    Endpoint { url: String, message: String },
    #[error("endpoint {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}
