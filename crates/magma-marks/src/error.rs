//! Errors of the mark renderers and the box readers.

/// Everything that can go wrong while reading boxes or drawing marks.
#[derive(Debug, thiserror::Error)]
pub enum MarksError {
    /// The boxes file was empty (or only whitespace).
    #[error("{source_name}: empty input, expected a JSON array of boxes")]
    EmptyInput {
        /// Name of the input (usually the file path).
        source_name: String,
    },
    /// The boxes file is not valid JSON.
    #[error("{source_name}: malformed JSON at line {line}, column {column}: {message}")]
    Json {
        /// Name of the input (usually the file path).
        source_name: String,
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
        /// What the JSON parser expected.
        message: String,
    },
    /// The top level of the boxes file has the wrong shape.
    #[error("{source_name}: {message}")]
    Layout {
        /// Name of the input (usually the file path).
        source_name: String,
        /// What was expected at the top level.
        message: String,
    },
    /// One entry of the boxes file is invalid.
    #[error("{source_name}: entry {index}, field {field}: {message}")]
    Entry {
        /// Name of the input (usually the file path).
        source_name: String,
        /// 0-based index of the entry in the box list.
        index: usize,
        /// The offending field, e.g. `bbox[2] (x2)`.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A box does not overlap the image at all, so it cannot be clipped.
    #[error(
        "{source_name}: entry {index}: box [x1={x1}, y1={y1}, x2={x2}, y2={y2}] (pixels) lies entirely \
         outside the {width}×{height} image"
    )]
    BoxOutsideImage {
        /// Name of the input (usually the file path).
        source_name: String,
        /// 0-based index of the entry.
        index: usize,
        /// Left edge in pixels.
        x1: f64,
        /// Top edge in pixels.
        y1: f64,
        /// Right edge in pixels.
        x2: f64,
        /// Bottom edge in pixels.
        y2: f64,
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
    },
    /// The image has no pixels.
    #[error("the image is {width}×{height}; marks need a non-empty image")]
    EmptyImage {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
    },
    /// A label character has no glyph in the bundled font.
    #[error("label character {0:?} has no glyph in the bundled Liberation Sans")]
    UnsupportedLabelChar(char),
    /// A font size outside 1..=4096 px was requested.
    #[error("font size {0} px is outside the supported range 1..=4096")]
    FontSize(u32),
    /// `draw_trace_marks` got a different number of points and ids.
    #[error("draw_trace_marks: {points} points but {ids} ids; expected one id per point")]
    TraceMarkCount {
        /// Number of points passed.
        points: usize,
        /// Number of ids passed.
        ids: usize,
    },
    /// Writing the marked image failed.
    #[error("{path}: cannot write the marked PNG: {message}")]
    Write {
        /// The output path.
        path: String,
        /// What failed (I/O or encoding).
        message: String,
    },
    /// A trace mark point is NaN or infinite.
    #[error("draw_trace_marks: point {index} is ({x}, {y}); expected finite pixel coordinates")]
    TracePoint {
        /// 0-based index of the point.
        index: usize,
        /// The x coordinate given.
        x: f32,
        /// The y coordinate given.
        y: f32,
    },
}
