//! Magma's processor in Rust: everything between user input and the model's tensors.
//!
//! * **Images** ([`ImageProcessor`]): decode PNG/JPEG/GIF to RGB ([`load_rgb_image`]), normalise
//!   with the CLIP mean/std, pick an any-resolution crop grid exactly as the reference does
//!   ([`grid::best_grid`]), stretch with PyTorch-exact bilinear interpolation ([`resize`]) and cut
//!   `base x base` crops.
//! * **Text** ([`Processor`]): the Hugging Face chat template (Jinja via `minijinja`), the
//!   `<image>` → `<image_start><image><image_end>` rewrite, tokenization with the reference's
//!   double BOS, special-token ids read from the model files, and decoding.
//!
//! Reference quirks are reproduced on purpose and documented where they happen: normalise before
//! resize, stretch without padding, grid area capped by the original area, two BOS tokens.
//!
//! ```
//! use magma_processor::Processor;
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
//!     .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop");
//! let processor = Processor::from_dir(&dir)?;
//! let inputs = processor.process("Write a haiku about robots.", &[], None)?;
//! assert!(inputs.prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
//! assert_eq!(inputs.merged_len, inputs.input_ids.len());
//! # Ok::<(), magma_processor::ProcessorError>(())
//! ```

mod chat;
mod error;
pub mod grid;
pub mod image_io;
mod image_processor;
pub mod npy;
mod processor;
pub mod resize;
mod special_tokens;
pub mod training;

pub use chat::{ChatMessage, ChatTemplate, DEFAULT_SYSTEM_PROMPT};
pub use error::ProcessorError;
pub use image_io::{decode_rgb_image, load_rgb_image, DEFAULT_MAX_PIXELS};
pub use image_processor::{ImageProcessor, ImageProcessorConfig, PreprocessedImage};
pub use processor::{
    clean_up_tokenization_spaces, load_tokenizer, PixelValues, ProcessedInputs, Processor,
};
pub use special_tokens::{SpecialTokens, IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN};

/// Reads a JSON file, naming it in errors.
pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value, ProcessorError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProcessorError::io(path, e))?;
    serde_json::from_str(&text).map_err(|cause| ProcessorError::Json {
        path: path.to_path_buf(),
        cause,
    })
}
