//! LLaVA-style instruction JSON (`{id, image, conversations}`), passed through after checks:
//! every image must exist and decode, and the number of `<image>` placeholders must match the
//! number of images (the trainer, `magma_processor::training`, rejects any other count).
//! Records keep their image paths relative to `images` (the loader's `IMAGE_FOLDER`); their sizes
//! are filled in from the decoded images.

use std::path::PathBuf;

use super::read_image;
use crate::magma_json::item_to_record;
use crate::record::{Media, Sample};
use crate::stage::{Sink, Stage, WorkItem};
use crate::{DataError, Result};

/// The LLaVA pass-through converter.
#[derive(Debug, Clone)]
pub struct Llava {
    /// The image folder the items' `image` paths are relative to.
    pub images: PathBuf,
}

impl Stage for Llava {
    fn name(&self) -> &str {
        "llava"
    }

    fn process(&self, item: &WorkItem, sink: &mut dyn Sink) -> Result<()> {
        let text = std::fs::read_to_string(&item.path).map_err(|e| DataError::io(&item.path, e))?;
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| DataError::Json {
                path: item.path.clone(),
                message: e.to_string(),
            })?;
        'items: for (n, value) in items.iter().enumerate() {
            let mut record = match item_to_record(value, "llava", &item.key, n) {
                Ok(r) => r,
                Err(e) => {
                    sink.skip(&format!("item {n}"), "bad_item", e);
                    continue;
                }
            };
            let locator = record.provenance.locator.clone();
            record.provenance.converter = format!("llava {}", env!("CARGO_PKG_VERSION"));
            let placeholders = record.image_placeholders();
            let images = record.media.len();
            if placeholders != images {
                sink.skip(
                    &locator,
                    "placeholder_mismatch",
                    format!("{placeholders} <image> placeholders for {images} images"),
                );
                continue;
            }
            for media in &mut record.media {
                let Media::Image {
                    path,
                    width,
                    height,
                } = media
                else {
                    continue;
                };
                // The reference's literal path fix (`ming2web_images` → `mind2web_images`) and its
                // dropping of a leading `/` before joining with IMAGE_FOLDER.
                let relative = path
                    .trim_start_matches('/')
                    .replace("ming2web_images", "mind2web_images");
                let full = self.images.join(&relative);
                match read_image(&full) {
                    Ok((_, img)) => {
                        (*width, *height) = img.dimensions();
                    }
                    Err(DataError::Io { .. }) => {
                        sink.skip(
                            &locator,
                            "missing_image",
                            format!("{} not found", full.display()),
                        );
                        continue 'items;
                    }
                    Err(e) => {
                        sink.skip(&locator, "undecodable_image", e.to_string());
                        continue 'items;
                    }
                }
            }
            sink.emit(Sample::new(record))?;
        }
        Ok(())
    }
}
