//! Typed builders for the reference's task prompts, so callers never hand-write them.
//!
//! Every builder returns the *user turn* text with a bare `<image>` placeholder, as the
//! reference writes it before applying the chat template; models whose config sets
//! `mm_use_image_start_end` need [`with_image_start_end`] on top (the reference replaces the tag
//! after templating, which gives the same text). The wording of each template is an interface
//! fact of the released model (it was trained on exactly these strings); the source of each is
//! cited on the item.

use crate::marks::{MarkPosition, GRID_SIZE};

/// System prompt of every reference agent (sic: "You are agent").
pub const SYSTEM_PROMPT: &str = "You are agent that can see, talk and act.";

/// The image placeholder token.
pub const IMAGE_TOKEN: &str = "<image>";

/// Replaces every `<image>` by `<image_start><image><image_end>` (for `mm_use_image_start_end`).
///
/// ```
/// use magma_actions::prompts::{robot_action, with_image_start_end};
/// assert_eq!(
///     with_image_start_end(&robot_action("pick up the can")),
///     "<image_start><image><image_end>\nWhat action should the robot take to pick up the can?"
/// );
/// ```
pub fn with_image_start_end(prompt: &str) -> String {
    prompt.replace(IMAGE_TOKEN, "<image_start><image><image_end>")
}

/// Zero-shot UI grounding on a SoM-marked screenshot (`agents/ui_agent/app.py`,
/// `magma_som_prompt`). The answer is parsed with [`crate::ui::resolve_click`].
///
/// ```
/// use magma_actions::prompts::ui_grounding;
/// assert_eq!(
///     ui_grounding("open settings"),
///     "<image>\nIn this view I need to click a button to \"open settings\"? Provide the \
///      coordinates and the mark index of the containing bounding box if applicable."
/// );
/// ```
pub fn ui_grounding(instruction: &str) -> String {
    format!(
        "{IMAGE_TOKEN}\nIn this view I need to click a button to \"{instruction}\"? Provide the \
         coordinates and the mark index of the containing bounding box if applicable."
    )
}

/// UI question answering on the raw screenshot (`agents/ui_agent/app.py`, `magma_qa_prompt`;
/// the app passes the user text including its `Q:` prefix).
pub fn ui_qa(question: &str) -> String {
    format!("{IMAGE_TOKEN}\n{question} Answer the question briefly.")
}

/// The robot-action question of the LIBERO and SimplerEnv wrappers and of the OXE training
/// data; the answer is 7 action tokens.
pub fn robot_action(task: &str) -> String {
    format!("{IMAGE_TOKEN}\nWhat action should the robot take to {task}?")
}

/// One AITW step (paper Fig. 15; text as in the released `MagmaAI/Magma-AITW-SoM` data).
#[derive(Debug, Clone, PartialEq)]
pub struct AitwStep<'a> {
    /// The episode's goal ("Current task").
    pub task: &'a str,
    /// Earlier actions, one line each, oldest first; empty renders as `None`.
    pub previous_actions: &'a [String],
    /// 0-based step index.
    pub step: usize,
    /// Number of SoM boxes drawn on the screenshot.
    pub num_marks: usize,
}

impl AitwStep<'_> {
    /// Renders the user turn. The schema lines are indented by one space as the dataset viewer
    /// shows them.
    ///
    /// ```
    /// use magma_actions::prompts::AitwStep;
    ///
    /// let p = AitwStep { task: "Open the clock", previous_actions: &[], step: 0, num_marks: 11 }.render();
    /// assert!(p.starts_with("<image>\nImagine you are interacting with an Android device step by step."));
    /// assert!(p.ends_with("Current task: Open the clock\n\nPrevious actions:\nNone\n\n\
    ///     Current screenshot is labeled with 11 bounding boxes and numeric marks to guide your \
    ///     interactions. Determine your next action (Step 0) and provide the output in the \
    ///     specified dictionary format."));
    /// ```
    pub fn render(&self) -> String {
        let history = if self.previous_actions.is_empty() {
            "None".to_string()
        } else {
            self.previous_actions.join("\n")
        };
        format!(
            "{IMAGE_TOKEN}\nImagine you are interacting with an Android device step by step. You can \
             see the screen and know the previous actions through recorded history. The screenshots \
             are labeled with bounding boxes and numeric marks to guide your interactions. Your task \
             is to determine the next action to perform. The possible actions include tapping, \
             swiping, navigating, typing, or setting the task status.\n\n\
             Use the following format for your output, selecting the appropriate key-value pair:\n\
             ```json\n{{\n \
             \"TAP\": dict, // Use {{\"MARK\": mark_index}} where `mark_index` is an integer \
             corresponding to the bounding box on the screen, or {{\"NORMALIZED_COORDINATE\": [x, y]}} \
             where `x` and `y` are float numbers between 0 and 1 representing the normalized \
             coordinates on the screen.\n \
             \"SWIPE\": str, // Choose \"UP\", \"DOWN\", \"LEFT\", or \"RIGHT\"\n \
             \"NAVIGATE\": str, // Choose \"BACK\", \"HOME\", or \"ENTER\"\n \
             \"TYPE\": str, // The text to be typed\n \
             \"SET_TASK_STATUS\": str, // Choose \"COMPLETE\" or \"IMPOSSIBLE\"\n\
             }}\n```\n\n\
             Current task: {task}\n\n\
             Previous actions:\n{history}\n\n\
             Current screenshot is labeled with {marks} bounding boxes and numeric marks to guide \
             your interactions. Determine your next action (Step {step}) and provide the output in \
             the specified dictionary format.",
            task = self.task,
            marks = self.num_marks,
            step = self.step,
        )
    }
}

/// Who acts in a ToM question, which selects its verb phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TomSubject {
    /// Video data: "The person is doing: …".
    PersonDoing,
    /// Narrated video data: "The person is saying: …".
    PersonSaying,
    /// Robot (OXE) data: "The robot is doing: …".
    RobotDoing,
}

impl TomSubject {
    fn phrase(self) -> &'static str {
        match self {
            Self::PersonDoing => "The person is doing",
            Self::PersonSaying => "The person is saying",
            Self::RobotDoing => "The robot is doing",
        }
    }
}

/// How the marks are announced in a ToM question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TomMarks {
    /// Marks drawn on the image: their ids as a Python list, `[1, 2, 5]` (all marks, sorted).
    Drawn(Vec<u32>),
    /// OXE "textual SoM": marks are not drawn, their positions are listed:
    /// `: Mark 1 at [12, 200], Mark 2 at [40, 41]`.
    Textual(Vec<MarkPosition>),
}

/// The Trace-of-Mark question of the training data (`data/conversations.py` for video,
/// `data/openx_magma/data_utils.py` for robots).
///
/// ```
/// use magma_actions::prompts::{TomMarks, TomQuestion, TomSubject};
///
/// let q = TomQuestion {
///     subject: TomSubject::PersonDoing,
///     task: "cut the onion",
///     marks: TomMarks::Drawn(vec![1, 2, 5]),
///     steps: 8,
///     speed: None,
/// };
/// assert_eq!(
///     q.render(),
///     "<image>\n\nThe image is split into 256x256 grids, and labeled with numeric marks [1, 2, 5].\n\
///      The person is doing: cut the onion. To finish the task, how to move the numerical marks \
///      in the image for the next 8 steps?\n"
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TomQuestion<'a> {
    /// Person doing / saying, robot doing.
    pub subject: TomSubject,
    /// The task text.
    pub task: &'a str,
    /// Mark ids (drawn) or positions (textual).
    pub marks: TomMarks,
    /// `N` = the longest future trace (`max(len) - 1` of the kept traces).
    pub steps: usize,
    /// With `mm_use_trace_speed`: `int(mean per-mark speed)`.
    pub speed: Option<u32>,
}

impl TomQuestion<'_> {
    /// Renders the user turn exactly as the training data does, including its blank line after
    /// the image placeholder (`"<image>\n" + "\nThe image …"`) and trailing newline.
    pub fn render(&self) -> String {
        let marks = match &self.marks {
            TomMarks::Drawn(ids) => format!(" {}", python_int_list(ids)),
            TomMarks::Textual(positions) => {
                let listed = positions
                    .iter()
                    .map(|m| format!("Mark {} at [{}, {}]", m.id, m.at.x, m.at.y))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(": {listed}")
            }
        };
        let speed = self
            .speed
            .map(|s| format!(" with speed {s}"))
            .unwrap_or_default();
        format!(
            "{IMAGE_TOKEN}\n\nThe image is split into {GRID_SIZE}x{GRID_SIZE} grids, and labeled with \
             numeric marks{marks}.\n{subject}: {task}. To finish the task, how to move the numerical \
             marks in the image{speed} for the next {steps} steps?\n",
            subject = self.subject.phrase(),
            task = self.task,
            steps = self.steps,
        )
    }
}

/// The SoM question of the training data (`_construct_conv_som`); the answer is
/// [`crate::marks::som::format_answer`].
pub fn som_locate_question() -> String {
    format!(
        "{IMAGE_TOKEN}\n\nThe image is split into {GRID_SIZE}x{GRID_SIZE} grids, and labeled with \
         numeric marks.\nPlease locate all the numerical marks in the image.\n"
    )
}

/// The robot-trajectory demo's question (`agents/robot_traj/app.py`): note its different wording
/// ("grids and is labeled") and single newline after the image; marks are `[1..=num_marks]`.
///
/// ```
/// use magma_actions::prompts::robot_trajectory_demo;
/// assert_eq!(
///     robot_trajectory_demo(3, "Pick up the chip bag.", 8, 8),
///     "<image>\nThe image is split into 256x256 grids and is labeled with numeric marks [1, 2, 3].\n\
///      The robot is doing: Pick up the chip bag.. To finish the task, how to move the numerical \
///      marks in the image with speed 8 for the next 8 steps?\n"
/// );
/// ```
pub fn robot_trajectory_demo(num_marks: u32, task: &str, speed: u32, steps: usize) -> String {
    let ids: Vec<u32> = (1..=num_marks).collect();
    format!(
        "{IMAGE_TOKEN}\nThe image is split into {GRID_SIZE}x{GRID_SIZE} grids and is labeled with \
         numeric marks {}.\nThe robot is doing: {task}. To finish the task, how to move the \
         numerical marks in the image with speed {speed} for the next {steps} steps?\n",
        python_int_list(&ids)
    )
}

/// Python's `repr` of a list of ints: `[1, 2, 5]`.
fn python_int_list(ids: &[u32]) -> String {
    let items = ids.iter().map(u32::to_string).collect::<Vec<_>>();
    format!("[{}]", items.join(", "))
}
