//! Video curation: shot detection equal to PySceneDetect ([`shots`], on the bit-exact OpenCV
//! operations of [`cvops`], reading videos through [`video`]), the CLIP score filter
//! (`clip`, feature `clip`; its preprocessing and tokenizer need no model runtime) and the
//! video converter [`stage`] (clip list → shots → CLIP → windows → ToM records).

#[cfg(feature = "clip")]
pub mod clip;
pub mod clip_preprocess;
pub mod clip_tokenizer;
pub mod cvops;
pub mod shots;
pub mod stage;
pub mod video;
