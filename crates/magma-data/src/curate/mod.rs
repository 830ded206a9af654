//! Video curation: shot detection equal to PySceneDetect ([`shots`], on the bit-exact OpenCV
//! operations of [`cvops`], reading videos through [`video`]) and the CLIP score filter
//! ([`clip`], feature `clip`; its preprocessing and tokenizer need no model runtime).

#[cfg(feature = "clip")]
pub mod clip;
pub mod clip_preprocess;
pub mod clip_tokenizer;
pub mod cvops;
pub mod shots;
pub mod video;
