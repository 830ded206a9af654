//! ScreenSpot: a predicted point is right when it lies in the target box (SeeClick's
//! `pretrain/screenspot_test.py`), reported per platform × `text`/`icon`; `overall` is the
//! unweighted mean of the six cells (Magma's SS-Overall, Table 3).

use serde::Deserialize;

use crate::scores::{mean, percent, Scores};

/// Platforms in the order of the ScreenSpot files and Magma's Table 2.
pub const PLATFORMS: [&str; 3] = ["mobile", "desktop", "web"];

/// One reference instruction.
#[derive(Debug, Clone, Deserialize)]
pub struct ScreenSpotReference {
    pub img_filename: String,
    /// `[x, y, w, h]` pixels, top-left origin.
    pub bbox: [f64; 4],
    pub instruction: String,
    pub data_type: String,
    #[serde(default)]
    pub data_source: String,
    pub platform: String,
    /// `[width, height]` pixels.
    pub img_size: [f64; 2],
}

/// One predicted point.
#[derive(Debug, Clone, Deserialize)]
pub struct ScreenSpotPrediction {
    pub img_filename: String,
    pub instruction: String,
    /// `[x, y]` normalised; `None` = unparsable.
    #[serde(default)]
    pub point: Option<[f64; 2]>,
}

/// The join key: file name and instruction.
pub fn key(img_filename: &str, instruction: &str) -> String {
    format!("{img_filename}\u{1f}{instruction}")
}

/// Whether `point` ([x, y], normalised) hits the reference box. The box's right and bottom
/// edges are `(x + w) / W` and `(y + h) / H`, computed in pixels first as SeeClick does, and
/// are inclusive.
///
/// ```
/// use magma_eval::metrics::screenspot::hit;
/// // box x 100..150 of 1000 px, y 100..110 of 400 px
/// assert!(hit([100.0, 100.0, 50.0, 10.0], [1000.0, 400.0], [0.15, 0.275]));
/// assert!(!hit([100.0, 100.0, 50.0, 10.0], [1000.0, 400.0], [0.151, 0.26]));
/// ```
pub fn hit(bbox: [f64; 4], img_size: [f64; 2], point: [f64; 2]) -> bool {
    let [x, y, w, h] = bbox;
    let [iw, ih] = img_size;
    let b = [x / iw, y / ih, (x + w) / iw, (y + h) / ih];
    b[0] <= point[0] && point[0] <= b[2] && b[1] <= point[1] && point[1] <= b[3]
}

/// Per platform: `text`, `icon` (accuracy over that data type), `accuracy` (all of the
/// platform), counts; top level: `overall` (mean of the platform × type cells present),
/// `text`, `icon` (pooled over platforms).
pub fn score(pairs: &[(ScreenSpotReference, Option<ScreenSpotPrediction>)]) -> Scores {
    let outcome = |r: &ScreenSpotReference, p: &Option<ScreenSpotPrediction>| {
        p.as_ref()
            .and_then(|p| p.point)
            .is_some_and(|pt| hit(r.bbox, r.img_size, pt))
    };
    let count = |f: &dyn Fn(&ScreenSpotReference) -> bool| {
        let selected: Vec<_> = pairs.iter().filter(|(r, _)| f(r)).collect();
        let hits = selected.iter().filter(|(r, p)| outcome(r, p)).count();
        (hits as f64, selected.len() as f64)
    };
    let mut platforms: Vec<&str> = PLATFORMS.to_vec();
    for (r, _) in pairs {
        if !platforms.contains(&r.platform.as_str()) {
            platforms.push(r.platform.as_str());
        }
    }
    let mut scores = Scores::new();
    let mut cells = Vec::new();
    for platform in platforms {
        let (hits, n) = count(&|r| r.platform == platform);
        if n == 0.0 {
            continue;
        }
        let mut s = Scores::new();
        for kind in ["text", "icon"] {
            let (h, k) = count(&|r| r.platform == platform && r.data_type == kind);
            if k > 0.0 {
                let v = percent(h, k);
                s.insert(kind, v);
                cells.push(v);
            }
        }
        s.insert("accuracy", percent(hits, n));
        s.insert("instructions", n);
        scores.insert_group(platform, s);
    }
    scores.insert("overall", mean(&cells));
    for kind in ["text", "icon"] {
        let (h, k) = count(&|r| r.data_type == kind);
        scores.insert(kind, percent(h, k));
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_edge_is_computed_in_pixels_first() {
        // (x + w) / W = 0.3 exactly here, while x/W + w/W = 0.1 + 0.2 = 0.30000000000000004
        let bbox = [100.0, 0.0, 200.0, 10.0];
        assert!(hit(bbox, [1000.0, 10.0], [0.3, 0.5]));
        assert!(!hit(bbox, [1000.0, 10.0], [0.30000000000000004, 0.5]));
    }
}
