//! The full Magma processor: chat template, tokenizer and image processor together.

use std::path::{Path, PathBuf};

use image::RgbImage;
use tokenizers::Tokenizer;

use crate::chat::{ChatMessage, ChatTemplate, DEFAULT_SYSTEM_PROMPT};
use crate::image_io::{load_rgb_image, DEFAULT_MAX_PIXELS};
use crate::special_tokens::{SpecialTokens, IMAGE_END_TOKEN, IMAGE_START_TOKEN, IMAGE_TOKEN};
use crate::{read_json, ImageProcessor, ProcessorError};

/// Pixel values of all crops of all images, concatenated: `[n_crops, 3, base, base]`, C order.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

/// Everything the model needs for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedInputs {
    /// The rendered chat template, after the `<image>` rewrite; exactly what was tokenized.
    pub prompt: String,
    /// Token ids; start with BOS twice (template + tokenizer), one `<image>` id per image.
    pub input_ids: Vec<u32>,
    /// All ones, one per id.
    pub attention_mask: Vec<u32>,
    /// Crops of all images in prompt order.
    pub pixel_values: PixelValues,
    /// `(rows, cols)` crop grid per image, in prompt order.
    pub image_grids: Vec<(usize, usize)>,
    /// Feature vectors per image, `rows*f * (cols*f + 1)` with `f = base/32`.
    pub image_tokens: Vec<usize>,
    /// Sequence length after each `<image>` id is replaced by its features.
    pub merged_len: usize,
}

/// Magma's processor, loaded from a model folder (`tokenizer.json`, `tokenizer_config.json`,
/// `preprocessor_config.json`, `config.json`, optional `generation_config.json`).
///
/// ```
/// use magma_processor::Processor;
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
///     .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop");
/// let processor = Processor::from_dir(&dir)?;
/// let image = image::RgbImage::from_pixel(600, 400, image::Rgb([90, 60, 30]));
/// let inputs = processor.process("<image>\nWhat is in this image?", &[image], None)?;
/// let bos = processor.special_tokens().bos;
/// assert_eq!(&inputs.input_ids[..2], &[bos, bos]); // the reference's double BOS
/// assert_eq!(inputs.image_grids, vec![(2, 2)]);
/// assert_eq!(inputs.pixel_values.shape, [4, 3, 96, 96]);
/// assert_eq!(inputs.merged_len, inputs.input_ids.len() - 1 + 42);
/// # Ok::<(), magma_processor::ProcessorError>(())
/// ```
#[derive(Debug)]
pub struct Processor {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    image_processor: ImageProcessor,
    special_tokens: SpecialTokens,
    use_image_start_end: bool,
    clean_up_tokenization_spaces: bool,
    max_pixels: u64,
}

impl Processor {
    /// Loads every processor file of a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self, ProcessorError> {
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let tokenizer_config_path = dir.join("tokenizer_config.json");
        let template = ChatTemplate::from_tokenizer_config(&tokenizer_config_path)?;
        let clean_up_tokenization_spaces = bool_field(
            &tokenizer_config_path,
            "clean_up_tokenization_spaces",
            false,
        )?;
        let image_processor = ImageProcessor::from_file(&dir.join("preprocessor_config.json"))?;
        let special_tokens = SpecialTokens::from_dir(dir, &tokenizer)?;
        let config_path = dir.join("config.json");
        let use_image_start_end = bool_field(&config_path, "mm_use_image_start_end", false)?;
        if use_image_start_end
            && (special_tokens.image_start.is_none() || special_tokens.image_end.is_none())
        {
            return Err(ProcessorError::config(
                &config_path,
                "mm_use_image_start_end",
                format!("is true but {tokenizer_path:?} lacks `{IMAGE_START_TOKEN}` or `{IMAGE_END_TOKEN}`"),
            ));
        }
        Ok(Self {
            tokenizer,
            template,
            image_processor,
            special_tokens,
            use_image_start_end,
            clean_up_tokenization_spaces,
            max_pixels: DEFAULT_MAX_PIXELS,
        })
    }

    /// Sets the largest image (in pixels) that [`Self::load_image`] and [`Self::process`] accept.
    pub fn with_pixel_limit(mut self, max_pixels: u64) -> Self {
        self.max_pixels = max_pixels;
        self
    }

    /// The pixel limit in use.
    pub fn pixel_limit(&self) -> u64 {
        self.max_pixels
    }

    /// Decodes an image file to RGB under this processor's pixel limit.
    pub fn load_image(&self, path: &Path) -> Result<RgbImage, ProcessorError> {
        load_rgb_image(path, self.max_pixels)
    }

    /// Full pipeline for one user turn: system prompt (default [`DEFAULT_SYSTEM_PROMPT`]) and
    /// user text through the chat template, tokenization, image preprocessing.
    ///
    /// `<image>` marks where each image goes; without any placeholder one `<image>\n` per image is
    /// put in front of the text. Any other count mismatch is an error.
    pub fn process(
        &self,
        user_text: &str,
        images: &[RgbImage],
        system: Option<&str>,
    ) -> Result<ProcessedInputs, ProcessorError> {
        let messages = [
            ChatMessage::system(system.unwrap_or(DEFAULT_SYSTEM_PROMPT)),
            ChatMessage::user(user_text),
        ];
        self.process_messages(&messages, images)
    }

    /// Same as [`Self::process`] for a whole conversation. If the first message is not a
    /// `system` message the default system prompt is put first (as every Magma app does).
    /// Without any `<image>` placeholder, one `<image>\n` per image goes in front of the first
    /// `user` message.
    pub fn process_messages(
        &self,
        messages: &[ChatMessage],
        images: &[RgbImage],
    ) -> Result<ProcessedInputs, ProcessorError> {
        let mut messages = messages.to_vec();
        if messages.first().map(|m| m.role.as_str()) != Some("system") {
            messages.insert(0, ChatMessage::system(DEFAULT_SYSTEM_PROMPT));
        }
        let placeholders: usize = messages
            .iter()
            .map(|m| m.content.matches(IMAGE_TOKEN).count())
            .sum();
        if placeholders == 0 && !images.is_empty() {
            let user = messages.iter_mut().find(|m| m.role == "user").ok_or(
                ProcessorError::NoUserMessage {
                    images: images.len(),
                },
            )?;
            user.content = format!(
                "{}{}",
                format!("{IMAGE_TOKEN}\n").repeat(images.len()),
                user.content
            );
        } else if placeholders != images.len() {
            return Err(ProcessorError::PlaceholderMismatch {
                placeholders,
                images: images.len(),
            });
        }

        let prompt = self.render_prompt(&messages)?;
        let input_ids = self.encode(&prompt)?;
        let image_ids = input_ids
            .iter()
            .filter(|&&id| id == self.special_tokens.image)
            .count();
        if image_ids != images.len() {
            return Err(ProcessorError::PlaceholderMismatch {
                placeholders: image_ids,
                images: images.len(),
            });
        }

        let base = self.image_processor.base_img_size();
        let mut data = Vec::new();
        let mut image_grids = Vec::with_capacity(images.len());
        let mut image_tokens = Vec::with_capacity(images.len());
        for (k, image) in images.iter().enumerate() {
            self.check_pixel_limit(image, k)?;
            let pre = self.image_processor.preprocess(image)?;
            let (rows, cols) = pre.grid();
            image_grids.push((rows, cols));
            image_tokens.push(self.image_processor.num_image_tokens(rows, cols));
            data.extend_from_slice(pre.crops());
        }
        let n_crops = image_grids.iter().map(|(r, c)| r * c).sum();
        let merged_len = input_ids.len() - images.len() + image_tokens.iter().sum::<usize>();
        Ok(ProcessedInputs {
            prompt,
            attention_mask: vec![1; input_ids.len()],
            input_ids,
            pixel_values: PixelValues {
                data,
                shape: [n_crops, 3, base, base],
            },
            image_grids,
            image_tokens,
            merged_len,
        })
    }

    /// Renders messages with the chat template (generation prompt on) and, when the model's
    /// `mm_use_image_start_end` is set, rewrites every `<image>` to
    /// `<image_start><image><image_end>`.
    pub fn render_prompt(&self, messages: &[ChatMessage]) -> Result<String, ProcessorError> {
        let rendered = self.template.render(messages, true)?;
        Ok(if self.use_image_start_end {
            rendered.replace(
                IMAGE_TOKEN,
                &format!("{IMAGE_START_TOKEN}{IMAGE_TOKEN}{IMAGE_END_TOKEN}"),
            )
        } else {
            rendered
        })
    }

    /// Tokenizes a rendered prompt with special tokens added, as the reference does: the
    /// tokenizer's BOS comes on top of the template's, so ids start with BOS twice.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, ProcessorError> {
        let encoding =
            self.tokenizer
                .encode(prompt, true)
                .map_err(|e| ProcessorError::Tokenize {
                    action: "encode the prompt",
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text with special tokens skipped and, if `tokenizer_config.json` asks for
    /// it (`clean_up_tokenization_spaces`, true for Magma), the spaces before punctuation and
    /// some English contractions removed.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ProcessorError> {
        let text = self
            .tokenizer
            .decode(ids, true)
            .map_err(|e| ProcessorError::Tokenize {
                action: "decode ids",
                message: e.to_string(),
            })?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization_spaces(&text)
        } else {
            text
        })
    }

    /// Special-token ids of the model.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// Whether `<image>` is wrapped in `<image_start>` / `<image_end>` (config `mm_use_image_start_end`).
    pub fn uses_image_start_end(&self) -> bool {
        self.use_image_start_end
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The image processor.
    pub fn image_processor(&self) -> &ImageProcessor {
        &self.image_processor
    }

    fn check_pixel_limit(&self, image: &RgbImage, index: usize) -> Result<(), ProcessorError> {
        let (width, height) = image.dimensions();
        let pixels = width as u64 * height as u64;
        if pixels > self.max_pixels {
            return Err(ProcessorError::ImageTooLarge {
                what: format!("#{}", index + 1),
                width,
                height,
                pixels,
                max_pixels: self.max_pixels,
            });
        }
        if pixels == 0 {
            return Err(ProcessorError::EmptyImage {
                what: format!("#{}", index + 1),
                width,
                height,
            });
        }
        Ok(())
    }
}

/// Loads `tokenizer.json`, naming the file in errors.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, ProcessorError> {
    if !path.is_file() {
        return Err(ProcessorError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    Tokenizer::from_file(path).map_err(|e| ProcessorError::TokenizerLoad {
        path: PathBuf::from(path),
        message: e.to_string(),
    })
}

/// The `transformers` clean-up applied after decoding when `clean_up_tokenization_spaces` is set
/// (the rule LLaMA-3 tokenizers inherit): drop the space before `.`, `?`, `!`, `,`, and in the
/// contractions `n't`, `'m`, `'s`, `'ve`, `'re`; turn ` ' ` into `'`. Applied in this order.
///
/// ```
/// use magma_processor::clean_up_tokenization_spaces;
/// assert_eq!(clean_up_tokenization_spaces("Hi , it 's me ."), "Hi, it's me.");
/// ```
pub fn clean_up_tokenization_spaces(text: &str) -> String {
    const RULES: [(&str, &str); 10] = [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ];
    RULES
        .iter()
        .fold(text.to_string(), |acc, (from, to)| acc.replace(from, to))
}

fn bool_field(path: &Path, field: &str, default: bool) -> Result<bool, ProcessorError> {
    match read_json(path)?.get(field) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ProcessorError::config(
            path,
            field,
            format!("expected true or false, found {other}"),
        )),
    }
}
