//! Reading candidate boxes: OmniParser's parsed-content list, plain pixel or ratio boxes, and the
//! reference's `(y, x, h, w)` form. Every problem names the entry (0-based index) and field.

use serde_json::Value;

use crate::error::MarksError;
use crate::geometry::Yxhw;

/// How the boxes in a JSON file are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoxFormat {
    /// OmniParser's `parsed_content_list`: objects with `bbox` `[x1, y1, x2, y2]` as ratios of the image
    /// size, plus `type`, `content`, `interactivity`. Converted to float pixels in f64 without truncation,
    /// as the reference UI agent passes OmniParser boxes through.
    #[default]
    OmniParser,
    /// `[x1, y1, x2, y2]` in pixels (bare arrays or objects with `bbox`).
    Pixels,
    /// `[x1, y1, x2, y2]` as ratios of the image width and height.
    Ratios,
    /// The reference's `(y, x, h, w)` in pixels (`plot_boxes_with_marks(normalized_to_pixel=False)`).
    Yxhw,
    /// `(y, x, h, w)` as ratios, converted like `plot_boxes_with_marks(normalized_to_pixel=True)`:
    /// multiplied by the image size and truncated to whole pixels.
    YxhwRatios,
}

impl BoxFormat {
    fn field_names(self) -> [&'static str; 4] {
        match self {
            BoxFormat::Yxhw | BoxFormat::YxhwRatios => ["y", "x", "h", "w"],
            _ => ["x1", "y1", "x2", "y2"],
        }
    }
}

/// One candidate element to mark.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CandidateBox {
    /// The box in pixels, `(y, x, h, w)`, after clipping to the image.
    pub rect: Yxhw,
    /// Element type (`"text"`, `"icon"`, a DOM tag, …) when the input has one.
    pub kind: Option<String>,
    /// Element text or caption when the input has one.
    pub content: Option<String>,
    /// OmniParser's `interactivity` flag when present.
    pub interactivity: Option<bool>,
}

impl CandidateBox {
    /// A box without metadata from pixel corners.
    pub fn from_xyxy(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        Self {
            rect: Yxhw::new(y1, x1, y2 - y1, x2 - x1),
            kind: None,
            content: None,
            interactivity: None,
        }
    }
}

/// Boxes read from a file, plus a note for every box that had to be clipped.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedBoxes {
    /// The boxes, in file order (mark `i` is entry `i`).
    pub boxes: Vec<CandidateBox>,
    /// One line per clipped coordinate, naming the entry and field.
    pub warnings: Vec<String>,
}

/// Replaces the non-standard tokens `NaN`, `Infinity` and `-Infinity` (as Python's `json.dump` writes
/// them) outside strings with `null`, so the entry holding them can be named instead of failing to parse.
fn neutralise_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(token) = token {
                out.push_str("null");
                rest = &rest[token.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null (NaN, Infinity or null in the file)".to_string(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    }
}

struct EntryReader<'a> {
    source_name: &'a str,
    index: usize,
    prefix: &'static str,
}

impl EntryReader<'_> {
    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> MarksError {
        let mut field = format!("{}{}", self.prefix, field.into());
        if field.is_empty() {
            field = "(entry)".to_string();
        }
        MarksError::Entry {
            source_name: self.source_name.to_string(),
            index: self.index,
            field,
            message: message.into(),
        }
    }

    fn optional_string(
        &self,
        obj: &serde_json::Map<String, Value>,
        key: &str,
    ) -> Result<Option<String>, MarksError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(
                key,
                format!("expected a string or null, found {}", describe(other)),
            )),
        }
    }
}

/// Reads boxes from JSON `text` for an image of `width × height` pixels.
///
/// Accepted layouts: a top-level array, or an object holding the array under `parsed_content_list` or
/// `boxes`; each entry is either a bare 4-number array or an object with a `bbox` array (and optional
/// `type`, `content`, `interactivity`). Boxes partly outside the image are clipped (noted in
/// [`ParsedBoxes::warnings`]); boxes entirely outside, reversed corners, negative sizes and non-finite
/// numbers are errors naming the entry and field. `source_name` (usually the file path) prefixes messages.
///
/// # Examples
///
/// ```
/// use magma_marks::{parse_boxes, BoxFormat};
///
/// let json = r#"[{"type": "icon", "bbox": [0.1, 0.2, 0.3, 0.4], "interactivity": true, "content": "OK"}]"#;
/// let parsed = parse_boxes(json, "parsed.json", BoxFormat::OmniParser, 1000, 500).unwrap();
/// let r = parsed.boxes[0].rect;
/// assert_eq!((r.x, r.y), (100.0, 100.0));
/// assert!((r.w - 200.0).abs() < 1e-9 && (r.h - 100.0).abs() < 1e-9);
///
/// let err = parse_boxes("[[0, 0, 5, NaN]]", "b.json", BoxFormat::Pixels, 10, 10).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "b.json: entry 0, field [3] (y2): expected a finite number, found null (NaN, Infinity or null in the file)"
/// );
/// ```
pub fn parse_boxes(
    text: &str,
    source_name: &str,
    format: BoxFormat,
    width: u32,
    height: u32,
) -> Result<ParsedBoxes, MarksError> {
    if width == 0 || height == 0 {
        return Err(MarksError::EmptyImage { width, height });
    }
    if text.trim().is_empty() {
        return Err(MarksError::EmptyInput {
            source_name: source_name.to_string(),
        });
    }
    let root: Value =
        serde_json::from_str(&neutralise_non_finite(text)).map_err(|e| MarksError::Json {
            source_name: source_name.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let entries = match &root {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("parsed_content_list").or_else(|| o.get("boxes")) {
            Some(Value::Array(a)) => a,
            _ => return Err(MarksError::Layout {
                source_name: source_name.to_string(),
                message:
                    "expected a JSON array of boxes, or an object with a \"parsed_content_list\" \
                              or \"boxes\" array"
                        .to_string(),
            }),
        },
        other => {
            return Err(MarksError::Layout {
                source_name: source_name.to_string(),
                message: format!("expected a JSON array of boxes, found {}", describe(other)),
            })
        }
    };
    let mut parsed = ParsedBoxes {
        boxes: Vec::with_capacity(entries.len()),
        warnings: Vec::new(),
    };
    for (index, entry) in entries.iter().enumerate() {
        let candidate = read_entry(
            entry,
            source_name,
            index,
            format,
            width,
            height,
            &mut parsed.warnings,
        )?;
        parsed.boxes.push(candidate);
    }
    Ok(parsed)
}

fn read_entry(
    entry: &Value,
    source_name: &str,
    index: usize,
    format: BoxFormat,
    width: u32,
    height: u32,
    warnings: &mut Vec<String>,
) -> Result<CandidateBox, MarksError> {
    let mut reader = EntryReader {
        source_name,
        index,
        prefix: "",
    };
    let (coords, kind, content, interactivity) = match entry {
        Value::Array(a) => (a, None, None, None),
        Value::Object(o) => {
            reader.prefix = "bbox";
            let coords = match o.get("bbox") {
                Some(Value::Array(a)) => a,
                Some(other) => {
                    return Err(reader.error(
                        "",
                        format!("expected an array of 4 numbers, found {}", describe(other)),
                    ))
                }
                None => return Err(reader.error("", "missing; expected an array of 4 numbers")),
            };
            reader.prefix = "";
            let kind = reader.optional_string(o, "type")?;
            let content = reader.optional_string(o, "content")?;
            let interactivity = match o.get("interactivity") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(other) => {
                    return Err(reader.error(
                        "interactivity",
                        format!("expected true or false, found {}", describe(other)),
                    ))
                }
            };
            reader.prefix = "bbox";
            (coords, kind, content, interactivity)
        }
        other => {
            return Err(reader.error(
                "(entry)",
                format!(
                    "expected a 4-number array or an object with \"bbox\", found {}",
                    describe(other)
                ),
            ))
        }
    };
    let names = format.field_names();
    if coords.len() != 4 {
        return Err(reader.error(
            "",
            format!(
                "expected 4 numbers [{}], found {}",
                names.join(", "),
                coords.len()
            ),
        ));
    }
    let mut v = [0f64; 4];
    for (k, (slot, value)) in v.iter_mut().zip(coords).enumerate() {
        *slot = match value.as_f64() {
            Some(n) if n.is_finite() => n,
            _ => {
                return Err(reader.error(
                    format!("[{k}] ({})", names[k]),
                    format!("expected a finite number, found {}", describe(value)),
                ))
            }
        };
    }
    let field = |k: usize| format!("[{k}] ({})", names[k]);
    let (w_px, h_px) = (f64::from(width), f64::from(height));
    let rect = match format {
        BoxFormat::OmniParser | BoxFormat::Pixels | BoxFormat::Ratios => {
            let [x1, y1, x2, y2] = v;
            if x2 < x1 {
                return Err(reader.error(
                    field(2),
                    format!("x2 = {x2} is less than x1 = {x1}; expected x1 ≤ x2"),
                ));
            }
            if y2 < y1 {
                return Err(reader.error(
                    field(3),
                    format!("y2 = {y2} is less than y1 = {y1}; expected y1 ≤ y2"),
                ));
            }
            if format == BoxFormat::Pixels {
                Yxhw::new(y1, x1, y2 - y1, x2 - x1)
            } else {
                Yxhw::new(y1 * h_px, x1 * w_px, (y2 - y1) * h_px, (x2 - x1) * w_px)
            }
        }
        BoxFormat::Yxhw | BoxFormat::YxhwRatios => {
            let [y, x, h, w] = v;
            if h < 0.0 {
                return Err(reader.error(field(2), format!("negative height {h}; expected h ≥ 0")));
            }
            if w < 0.0 {
                return Err(reader.error(field(3), format!("negative width {w}; expected w ≥ 0")));
            }
            if format == BoxFormat::Yxhw {
                Yxhw::new(y, x, h, w)
            } else {
                // The reference's `int(v * size)`: truncation toward zero.
                Yxhw::new(
                    (y * h_px).trunc(),
                    (x * w_px).trunc(),
                    (h * h_px).trunc(),
                    (w * w_px).trunc(),
                )
            }
        }
    };
    let rect = clip_to_image(rect, source_name, index, width, height, warnings)?;
    Ok(CandidateBox {
        rect,
        kind,
        content,
        interactivity,
    })
}

/// Clips `r` to the image, touching only the coordinates that stick out so in-image boxes keep their
/// exact values.
fn clip_to_image(
    r: Yxhw,
    source_name: &str,
    index: usize,
    width: u32,
    height: u32,
    warnings: &mut Vec<String>,
) -> Result<Yxhw, MarksError> {
    let (w_px, h_px) = (f64::from(width), f64::from(height));
    let [x1, y1, x2, y2] = r.to_xyxy();
    if x2 < 0.0 || y2 < 0.0 || x1 > w_px || y1 > h_px {
        return Err(MarksError::BoxOutsideImage {
            source_name: source_name.to_string(),
            index,
            x1,
            y1,
            x2,
            y2,
            width,
            height,
        });
    }
    let mut out = r;
    let mut note = |what: &str, value: f64, limit: f64| {
        warnings.push(format!(
            "{source_name}: entry {index}: {what} = {value} lies outside the {width}×{height} image, clipped to {limit}"
        ));
    };
    if x1 < 0.0 {
        note("x1 (left)", x1, 0.0);
        out.x = 0.0;
        out.w = x2;
    }
    if y1 < 0.0 {
        note("y1 (top)", y1, 0.0);
        out.y = 0.0;
        out.h = y2;
    }
    if x2 > w_px {
        note("x2 (right)", x2, w_px);
        out.w = w_px - out.x;
    }
    if y2 > h_px {
        note("y2 (bottom)", y2, h_px);
        out.h = h_px - out.y;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, format: BoxFormat) -> String {
        parse_boxes(text, "boxes.json", format, 100, 50)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_all_formats() {
        let px = parse_boxes("[[10, 5, 30, 25]]", "p", BoxFormat::Pixels, 100, 50).unwrap();
        assert_eq!(px.boxes[0].rect, Yxhw::new(5.0, 10.0, 20.0, 20.0));
        let yx = parse_boxes(
            "{\"boxes\": [[5, 10, 20, 20]]}",
            "p",
            BoxFormat::Yxhw,
            100,
            50,
        )
        .unwrap();
        assert_eq!(yx.boxes[0].rect, px.boxes[0].rect);
        let ratios =
            parse_boxes("[[0.1, 0.1, 0.3, 0.5]]", "p", BoxFormat::Ratios, 100, 50).unwrap();
        let r = ratios.boxes[0].rect;
        assert!((r.x - 10.0).abs() < 1e-12 && (r.y - 5.0).abs() < 1e-12);
        assert!((r.w - 20.0).abs() < 1e-12 && (r.h - 20.0).abs() < 1e-12);
        // normalized_to_pixel=True truncates: 0.333 · 100 = 33.3 → 33.
        let yr = parse_boxes(
            "[[0.5, 0.333, 0.1, 0.129]]",
            "p",
            BoxFormat::YxhwRatios,
            100,
            50,
        )
        .unwrap();
        assert_eq!(yr.boxes[0].rect, Yxhw::new(25.0, 33.0, 5.0, 12.0));
        let omni = parse_boxes(
            r#"{"parsed_content_list": [{"type": "text", "bbox": [0, 0, 0.5, 0.5], "interactivity": false, "content": "Hi", "source": "box_ocr_content_ocr"}]}"#,
            "p",
            BoxFormat::OmniParser,
            100,
            50,
        )
        .unwrap();
        let b = &omni.boxes[0];
        assert_eq!(
            (b.kind.as_deref(), b.content.as_deref(), b.interactivity),
            (Some("text"), Some("Hi"), Some(false))
        );
        assert_eq!(b.rect, Yxhw::new(0.0, 0.0, 25.0, 50.0));
        assert!(parse_boxes("[]", "p", BoxFormat::Pixels, 100, 50)
            .unwrap()
            .boxes
            .is_empty());
    }

    #[test]
    fn clips_partly_outside_boxes_and_says_which() {
        let parsed = parse_boxes(
            "[[10, 5, 30, 25], [-5, 40, 120, 60]]",
            "b.json",
            BoxFormat::Pixels,
            100,
            50,
        )
        .unwrap();
        assert_eq!(parsed.boxes[1].rect, Yxhw::new(40.0, 0.0, 10.0, 100.0));
        assert_eq!(parsed.warnings.len(), 3);
        assert_eq!(
            parsed.warnings[0],
            "b.json: entry 1: x1 (left) = -5 lies outside the 100×50 image, clipped to 0"
        );
        assert!(parsed.warnings[1].contains("entry 1: x2 (right) = 120"));
        assert!(parsed.warnings[2].contains("entry 1: y2 (bottom) = 60"));
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        assert_eq!(
            err("", BoxFormat::Pixels),
            "boxes.json: empty input, expected a JSON array of boxes"
        );
        assert!(err("[[1, 2, 3, 4]", BoxFormat::Pixels)
            .starts_with("boxes.json: malformed JSON at line 1, column 13"));
        assert_eq!(
            err("[[0, 0, 1, 1], [200, 0, 300, 10]]", BoxFormat::Pixels),
            "boxes.json: entry 1: box [x1=200, y1=0, x2=300, y2=10] (pixels) lies entirely outside the 100×50 image"
        );
        assert_eq!(
            err("[[0, 0, 1, 1], [0, 0, 1, Infinity]]", BoxFormat::Pixels),
            "boxes.json: entry 1, field [3] (y2): expected a finite number, found null (NaN, Infinity or null in the file)"
        );
        assert_eq!(
            err(r#"[{"bbox": [0, 0, "x", 1]}]"#, BoxFormat::OmniParser),
            "boxes.json: entry 0, field bbox[2] (x2): expected a finite number, found the string \"x\""
        );
        assert_eq!(
            err("[[30, 0, 10, 5]]", BoxFormat::Pixels),
            "boxes.json: entry 0, field [2] (x2): x2 = 10 is less than x1 = 30; expected x1 ≤ x2"
        );
        assert_eq!(
            err("[[0, 0, 5, -2]]", BoxFormat::Yxhw),
            "boxes.json: entry 0, field [3] (w): negative width -2; expected w ≥ 0"
        );
        assert_eq!(
            err(r#"[{"box": [0, 0, 1, 1]}]"#, BoxFormat::OmniParser),
            "boxes.json: entry 0, field bbox: missing; expected an array of 4 numbers"
        );
        assert_eq!(
            err(r#"[{"bbox": [0, 0, 1]}]"#, BoxFormat::OmniParser),
            "boxes.json: entry 0, field bbox: expected 4 numbers [x1, y1, x2, y2], found 3"
        );
        assert_eq!(
            err(
                r#"[{"bbox": [0, 0, 1, 1], "content": 7}]"#,
                BoxFormat::OmniParser
            ),
            "boxes.json: entry 0, field content: expected a string or null, found 7"
        );
        assert_eq!(
            err(r#"{"a": 1}"#, BoxFormat::Pixels).split(':').next(),
            Some("boxes.json")
        );
        assert_eq!(
            err("\"NaN\"", BoxFormat::Pixels),
            "boxes.json: expected a JSON array of boxes, found the string \"NaN\""
        );
    }
}
