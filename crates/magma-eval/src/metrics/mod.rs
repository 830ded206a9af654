//! One module per benchmark, each equal to the benchmark's official scoring code; the module
//! documentation names the file it follows and every quirk it reproduces.

pub mod aitw;
pub mod chartqa;
pub mod mind2web;
pub mod pope;
pub mod robot;
pub mod screenspot;
pub mod tapvid;
pub mod vqa;
