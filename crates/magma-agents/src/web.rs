//! The web agent loop: observe (screenshot + elements), mark (Set-of-Mark), ask the policy,
//! parse the answer into a [`WebCommand`], execute it with real input events, wait until the page
//! settles, and log every step. Every failure of a step (a page that does not load, an answer
//! with no action, a vanished element, a policy error, a refused navigation) is a logged
//! [`Outcome`] with its reason; the run always ends with a [`RunSummary`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use magma_actions::prompts;
use magma_actions::ui::{ScrollDirection, WebCommand, WebTarget};
use magma_client::{ChatPolicy, ChatRequest};
use magma_marks::{mark_screenshot, CandidateBox, SetOfMarks, SomOptions};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cdp::CdpClient;
use crate::domain::AllowList;
use crate::error::AgentError;
use crate::observe::{extract_elements, Element};
use crate::page::{Page, SettleOptions, Viewport};

/// Which prompt the policy gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptStyle {
    /// Magma's multi-step format with the task history (the AITW fine-tuning prompt, paper
    /// Fig. 15: TAP / SWIPE / NAVIGATE / TYPE / SET_TASK_STATUS on a marked screenshot).
    #[default]
    History,
    /// The reference UI agent's one-shot grounding prompt ("In this view I need to click a
    /// button to …"), the same every step.
    Grounding,
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct WebAgentConfig {
    /// The page to start on.
    pub start_url: String,
    /// What to do.
    pub task: String,
    /// Stop after this many steps.
    pub max_steps: usize,
    /// Viewport and device pixel ratio.
    pub viewport: Viewport,
    /// Where navigation may go.
    pub allow: AllowList,
    /// Type into password fields (off: such a TYPE is refused).
    pub allow_passwords: bool,
    /// Settling after each action.
    pub settle: SettleOptions,
    /// Prompt format.
    pub prompt: PromptStyle,
    /// New tokens per answer.
    pub max_new_tokens: usize,
    /// Trajectory folder (`trajectory.jsonl`, screenshots, `report.html`).
    pub out_dir: Option<PathBuf>,
    /// Stop after this many policy errors in a row.
    pub max_policy_errors: usize,
}

impl WebAgentConfig {
    /// Defaults for a start URL and task: 10 steps, 1280×800 at DPR 1, the start URL's origin
    /// allowed, history prompt, 128 new tokens.
    pub fn new(start_url: &str, task: &str) -> Result<Self, AgentError> {
        Ok(Self {
            start_url: start_url.to_string(),
            task: task.to_string(),
            max_steps: 10,
            viewport: Viewport::default(),
            allow: AllowList::for_start_url(start_url)?,
            allow_passwords: false,
            settle: SettleOptions::default(),
            prompt: PromptStyle::default(),
            max_new_tokens: 128,
            out_dir: None,
            max_policy_errors: 3,
        })
    }
}

/// What happened in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The action was executed.
    Executed,
    /// The policy ended the task.
    Stopped,
    /// The page could not be loaded.
    NavigationFailed,
    /// Screenshot or element extraction failed.
    ObserveFailed,
    /// The policy (model, endpoint) failed or timed out.
    PolicyError,
    /// The answer holds no action.
    Unparsable,
    /// The action was not allowed (other domain, password field).
    Refused,
    /// The action could not be carried out (unknown mark, vanished element, no such option).
    ActionFailed,
    /// `--confirm` was answered no.
    Declined,
}

/// Time spent in each phase of a step, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StepTiming {
    /// Screenshot + element extraction.
    pub observe_ms: f64,
    /// Set-of-Mark drawing.
    pub mark_ms: f64,
    /// Writing the screenshots.
    pub write_ms: f64,
    /// The policy's answer.
    pub policy_ms: f64,
    /// Parsing the answer.
    pub parse_ms: f64,
    /// Executing the input events.
    pub act_ms: f64,
    /// Waiting for the page to settle.
    pub settle_ms: f64,
}

/// What was executed, in screenshot pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Executed {
    /// One-line description (`click (412, 230) on mark 3 "Submit"`).
    pub description: String,
    /// The point acted on, in screenshot pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<[f64; 2]>,
    /// The element acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<usize>,
}

/// One line of `trajectory.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 0-based step.
    pub step: usize,
    /// URL when observed.
    pub url: String,
    /// Screenshot file (relative to the output folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
    /// Marked screenshot file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marked_screenshot: Option<String>,
    /// Screenshot size in pixels.
    pub screenshot_size: [u32; 2],
    /// The marked elements (mark = index).
    pub elements: Vec<Element>,
    /// The user prompt.
    pub prompt: String,
    /// The policy's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_answer: Option<String>,
    /// The parsed action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<WebCommand>,
    /// What was executed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executed: Option<Executed>,
    /// The outcome.
    pub outcome: Outcome,
    /// Why, for anything but `executed`/`stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when the page did not settle after the action (the run goes on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settle_note: Option<String>,
    /// Per-phase times.
    pub timing: StepTiming,
}

/// The end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Steps logged.
    pub steps: usize,
    /// URL at the end.
    pub final_url: String,
    /// Why the loop ended (`stopped by the policy`, `max steps (10) reached`, …).
    pub stop_reason: String,
    /// The policy's final answer, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Outcome of each step, in order.
    pub outcomes: Vec<Outcome>,
    /// The output folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_dir: Option<PathBuf>,
}

/// Asked before each action when `--confirm` is on; `false` ends the run.
pub type Confirm<'a> = dyn FnMut(&WebCommand, Option<&Executed>) -> bool + 'a;

/// Runs the loop on a fresh tab of `client`'s browser. Errors are only returned for problems
/// before the first step (an unusable output folder, a browser that cannot open a tab); everything
/// after is logged as step outcomes.
pub fn run_web_agent(
    client: &CdpClient,
    policy: &mut dyn ChatPolicy,
    config: &WebAgentConfig,
    mut confirm: Option<&mut Confirm<'_>>,
) -> Result<RunSummary, AgentError> {
    let mut log = TrajectoryLog::create(config.out_dir.as_deref())?;
    client.set_allow_list(config.allow.clone());
    let page = Page::open(client, config.viewport)?;
    let mut history: Vec<String> = Vec::new();
    let mut outcomes = Vec::new();
    let mut answer = None;
    let mut policy_errors = 0;

    let started = match load_start(&page, config) {
        Ok(()) => true,
        Err(e) => {
            let record = StepRecord {
                step: 0,
                url: config.start_url.clone(),
                screenshot: None,
                marked_screenshot: None,
                screenshot_size: [0, 0],
                elements: Vec::new(),
                prompt: String::new(),
                raw_answer: None,
                action: None,
                executed: None,
                outcome: Outcome::NavigationFailed,
                reason: Some(e.to_string()),
                settle_note: None,
                timing: StepTiming::default(),
            };
            outcomes.push(record.outcome);
            log.write(&record)?;
            false
        }
    };
    let mut stop_reason = format!("max steps ({}) reached", config.max_steps);
    if !started {
        stop_reason = "the start page could not be loaded".into();
    }
    for step in 0..config.max_steps {
        if !started {
            break;
        }
        let record = run_step(
            &page,
            policy,
            config,
            step,
            &history,
            &mut log,
            &mut confirm,
        )?;
        outcomes.push(record.outcome);
        log.write(&record)?;
        match record.outcome {
            Outcome::PolicyError => {
                policy_errors += 1;
                if policy_errors >= config.max_policy_errors {
                    stop_reason = format!("the policy failed {policy_errors} times in a row");
                    break;
                }
                continue;
            }
            Outcome::Stopped => {
                if let Some(WebCommand::Stop { answer: a }) = &record.action {
                    answer = a.clone();
                }
                stop_reason = "stopped by the policy".into();
                break;
            }
            Outcome::Declined => {
                stop_reason = "declined at the confirmation prompt".into();
                break;
            }
            Outcome::ObserveFailed => {
                stop_reason = format!(
                    "the page could not be observed: {}",
                    record.reason.clone().unwrap_or_default()
                );
                break;
            }
            _ => {}
        }
        policy_errors = 0;
        if let Some(action) = &record.action {
            history.push(history_line(
                action,
                record.executed.as_ref(),
                record.outcome,
            ));
        }
    }
    let final_url = page.url().unwrap_or_default();
    let summary = RunSummary {
        steps: outcomes.len(),
        final_url,
        stop_reason,
        answer,
        outcomes,
        out_dir: config.out_dir.clone(),
    };
    log.finish(&summary)?;
    Ok(summary)
}

fn load_start(page: &Page, config: &WebAgentConfig) -> Result<(), AgentError> {
    if !config.allow.allows(&config.start_url) {
        return Err(AgentError::Refused {
            url: config.start_url.clone(),
            allowed: config.allow.describe(),
        });
    }
    page.navigate(&config.start_url)?;
    // a page that never settles is still observed; the note goes to the log
    if let Err(e) = page.wait_settled(&config.settle) {
        tracing::warn!("start page: {e}");
    }
    Ok(())
}

/// What the agent saw in one step.
pub struct Observation {
    /// URL when observed.
    pub url: String,
    /// The raw screenshot.
    pub screenshot: image::RgbImage,
    /// The elements (mark = index).
    pub elements: Vec<Element>,
    /// The marked screenshot.
    pub marks: SetOfMarks,
    /// Screenshot + elements time.
    pub observe: Duration,
    /// Marking time.
    pub mark: Duration,
}

/// Screenshot, elements and Set-of-Mark of the page as it is now.
pub fn observe(page: &Page) -> Result<Observation, AgentError> {
    let t = Instant::now();
    let url = page.url()?;
    let screenshot = page.screenshot()?;
    let elements = extract_elements(page)?;
    let observe = t.elapsed();
    let t = Instant::now();
    let boxes: Vec<CandidateBox> = elements
        .iter()
        .map(|e| {
            let mut b = CandidateBox::from_xyxy(e.bbox[0], e.bbox[1], e.bbox[2], e.bbox[3]);
            b.kind = Some(e.role.clone());
            b.content = Some(e.name.clone());
            b
        })
        .collect();
    let marks = mark_screenshot(&screenshot, &boxes, &SomOptions::default())
        .map_err(|e| AgentError::Invalid(format!("Set-of-Mark: {e}")))?;
    Ok(Observation {
        url,
        screenshot,
        elements,
        marks,
        observe,
        mark: t.elapsed(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run_step(
    page: &Page,
    policy: &mut dyn ChatPolicy,
    config: &WebAgentConfig,
    step: usize,
    history: &[String],
    log: &mut TrajectoryLog,
    confirm: &mut Option<&mut Confirm<'_>>,
) -> Result<StepRecord, AgentError> {
    let mut timing = StepTiming::default();
    let mut record = StepRecord {
        step,
        url: page.url().unwrap_or_default(),
        screenshot: None,
        marked_screenshot: None,
        screenshot_size: [0, 0],
        elements: Vec::new(),
        prompt: String::new(),
        raw_answer: None,
        action: None,
        executed: None,
        outcome: Outcome::ObserveFailed,
        reason: None,
        settle_note: None,
        timing,
    };
    let observation = match observe(page) {
        Ok(o) => o,
        Err(e) => {
            record.reason = Some(e.to_string());
            return Ok(record);
        }
    };
    timing.observe_ms = ms(observation.observe);
    timing.mark_ms = ms(observation.mark);
    record.url = observation.url.clone();
    record.screenshot_size = [
        observation.screenshot.width(),
        observation.screenshot.height(),
    ];
    let t = Instant::now();
    (record.screenshot, record.marked_screenshot) = log.save_images(step, &observation)?;
    timing.write_ms = ms(t.elapsed());
    record.elements = observation.elements.clone();

    let prompt = match config.prompt {
        PromptStyle::Grounding => prompts::ui_grounding(&config.task),
        PromptStyle::History => prompts::AitwStep {
            task: &config.task,
            previous_actions: history,
            step,
            num_marks: observation.elements.len(),
        }
        .render(),
    };
    record.prompt = prompt.clone();
    let request = ChatRequest::new(prompt)
        .system(prompts::SYSTEM_PROMPT)
        .image(observation.marks.image.clone())
        .max_new_tokens(config.max_new_tokens);
    let t = Instant::now();
    let answer = policy.answer(&request);
    timing.policy_ms = ms(t.elapsed());
    let answer = match answer {
        Ok(a) => a.text,
        Err(e) => {
            record.outcome = Outcome::PolicyError;
            record.reason = Some(e.to_string());
            record.timing = timing;
            return Ok(record);
        }
    };
    record.raw_answer = Some(answer.clone());
    let t = Instant::now();
    let parsed = WebCommand::parse(&answer);
    timing.parse_ms = ms(t.elapsed());
    let command = match parsed {
        Ok(c) => c,
        Err(e) => {
            record.outcome = Outcome::Unparsable;
            record.reason = Some(e.to_string());
            record.timing = timing;
            return Ok(record);
        }
    };
    record.action = Some(command.clone());
    if let WebCommand::Stop { .. } = command {
        record.outcome = Outcome::Stopped;
        record.timing = timing;
        return Ok(record);
    }
    let size = record.screenshot_size;
    let resolved = command
        .target()
        .map(|t| resolve_target(t, &observation.elements, size))
        .transpose();
    let resolved = match resolved {
        Ok(r) => r,
        Err(e) => {
            record.outcome = Outcome::ActionFailed;
            record.reason = Some(e.to_string());
            record.timing = timing;
            return Ok(record);
        }
    };
    let preview = resolved.as_ref().map(|(point, element)| Executed {
        description: String::new(),
        point: Some(*point),
        mark: element.map(|e| e.index),
    });
    if let Some(confirm) = confirm.as_mut() {
        if !confirm(&command, preview.as_ref()) {
            record.outcome = Outcome::Declined;
            record.reason = Some("the user declined the action".into());
            record.timing = timing;
            return Ok(record);
        }
    }
    let t = Instant::now();
    let target = resolved.map(|(p, e)| (p, e.cloned()));
    let result =
        check_connected(page, &target).and_then(|()| execute(page, config, &command, target));
    timing.act_ms = ms(t.elapsed());
    match result {
        Ok(executed) => {
            record.executed = Some(executed);
            record.outcome = Outcome::Executed;
        }
        Err(e @ AgentError::Refused { .. }) => {
            record.outcome = Outcome::Refused;
            record.reason = Some(e.to_string());
        }
        Err(e) => {
            record.outcome = Outcome::ActionFailed;
            record.reason = Some(e.to_string());
        }
    }
    let t = Instant::now();
    if let Err(e) = page.wait_settled(&config.settle) {
        record.settle_note = Some(e.to_string());
    }
    timing.settle_ms = ms(t.elapsed());
    // a document load the action started elsewhere was blocked while settling; Chromium then
    // shows its error page, so the agent goes back to the page it was on
    if let Some(url) = page.client().take_refused().first() {
        record.outcome = Outcome::Refused;
        record.reason = Some(
            AgentError::Refused {
                url: url.clone(),
                allowed: config.allow.describe(),
            }
            .to_string(),
        );
        if !page.url().is_ok_and(|now| config.allow.allows(&now)) {
            if let Err(e) = page
                .navigate(&record.url)
                .and_then(|()| page.wait_settled(&config.settle).map(|_| ()))
            {
                record.settle_note = Some(format!("returning to {}: {e}", record.url));
            }
        }
    }
    record.timing = timing;
    Ok(record)
}

/// The point (screenshot pixels) and element a target means: a mark on the screen wins, else the
/// normalised point (and the smallest element containing it).
pub fn resolve_target<'e>(
    target: &WebTarget,
    elements: &'e [Element],
    size: [u32; 2],
) -> Result<([f64; 2], Option<&'e Element>), AgentError> {
    if let Some(k) = target.mark {
        if let Some(e) = elements.get(k as usize) {
            return Ok((e.center(), Some(e)));
        }
    }
    match target.point {
        Some([x, y]) => {
            if !(0.0..=1.0).contains(&x) || !(0.0..=1.0).contains(&y) {
                return Err(AgentError::Invalid(format!(
                    "point ({x}, {y}) lies outside the screenshot (coordinates are fractions in [0, 1])"
                )));
            }
            let px = [x * f64::from(size[0]), y * f64::from(size[1])];
            let element = elements
                .iter()
                .filter(|e| e.contains(px[0], px[1]))
                .min_by(|a, b| area(a).total_cmp(&area(b)));
            Ok((px, element))
        }
        None => Err(AgentError::Invalid(format!(
            "mark {} is not on the screen ({} marks)",
            target.mark.unwrap_or_default(),
            elements.len()
        ))),
    }
}

/// An element observed this step must still be in the document when it is acted on.
fn check_connected(
    page: &Page,
    target: &Option<([f64; 2], Option<Element>)>,
) -> Result<(), AgentError> {
    let Some((_, Some(element))) = target else {
        return Ok(());
    };
    if element.backend_node_id < 0 {
        return Ok(());
    }
    let connected = page.call_on_node(
        element.backend_node_id,
        "function () { return this.isConnected; }",
        vec![],
    )?;
    if connected == Value::Bool(true) {
        Ok(())
    } else {
        Err(AgentError::Invalid(format!(
            "mark {} ({} {:?}) vanished from the page before the action",
            element.index, element.role, element.name
        )))
    }
}

fn area(e: &Element) -> f64 {
    (e.bbox[2] - e.bbox[0]) * (e.bbox[3] - e.bbox[1])
}

fn describe_target(point: [f64; 2], element: Option<&Element>) -> String {
    let mut s = format!("({:.0}, {:.0})", point[0], point[1]);
    if let Some(e) = element {
        s += &format!(" on mark {} {} {:?}", e.index, e.role, e.name);
    }
    s
}

const FOCUSED_INFO_JS: &str = r#"(() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const editable = e.isContentEditable || ['INPUT', 'TEXTAREA'].includes(e.tagName);
  if (editable && typeof e.select === 'function') e.select();
  return {tag: e.tagName.toLowerCase(), type: (e.type || '').toLowerCase(), editable};
})()"#;

const SELECT_OPTION_JS: &str = r#"function (wanted) {
  if (this.tagName !== 'SELECT') return {error: 'not a <select> but <' + this.tagName.toLowerCase() + '>'};
  const norm = s => (s || '').trim().toLowerCase();
  const w = norm(wanted);
  const options = Array.from(this.options);
  const i = options.findIndex(o => norm(o.label) === w || norm(o.value) === w || norm(o.text) === w);
  if (i < 0) return {error: 'no option ' + JSON.stringify(wanted) + ' (options: ' + options.map(o => JSON.stringify(o.label)).join(', ') + ')'};
  this.focus();
  this.selectedIndex = i;
  this.dispatchEvent(new Event('input', {bubbles: true}));
  this.dispatchEvent(new Event('change', {bubbles: true}));
  return {chosen: options[i].label};
}"#;

fn execute(
    page: &Page,
    config: &WebAgentConfig,
    command: &WebCommand,
    target: Option<([f64; 2], Option<Element>)>,
) -> Result<Executed, AgentError> {
    let viewport = page.viewport();
    let done = |description: String, target: &Option<([f64; 2], Option<Element>)>| Executed {
        description,
        point: target.as_ref().map(|(p, _)| *p),
        mark: target
            .as_ref()
            .and_then(|(_, e)| e.as_ref().map(|e| e.index)),
    };
    match command {
        WebCommand::Click { .. } => {
            let (p, e) = target.as_ref().expect("click has a target");
            page.click(p[0], p[1])?;
            Ok(done(
                format!("click {}", describe_target(*p, e.as_ref())),
                &target,
            ))
        }
        WebCommand::Type { text, .. } => {
            if let Some((p, e)) = &target {
                if e.as_ref().is_some_and(Element::is_password) && !config.allow_passwords {
                    return Err(AgentError::Refused {
                        url: "a password field".into(),
                        allowed: "typing into password fields needs --allow-passwords".into(),
                    });
                }
                page.click(p[0], p[1])?;
            }
            let focused = page.evaluate(FOCUSED_INFO_JS)?;
            if focused.get("editable").and_then(Value::as_bool) != Some(true) {
                return Err(AgentError::Invalid(format!(
                    "nothing editable has the focus to type into (focused: {focused})"
                )));
            }
            if focused.get("type").and_then(Value::as_str) == Some("password")
                && !config.allow_passwords
            {
                return Err(AgentError::Refused {
                    url: "a password field".into(),
                    allowed: "typing into password fields needs --allow-passwords".into(),
                });
            }
            page.type_text(text)?;
            let place = match &target {
                Some((p, e)) => format!(" at {}", describe_target(*p, e.as_ref())),
                None => " into the focused element".into(),
            };
            Ok(done(format!("type {text:?}{place}"), &target))
        }
        WebCommand::Select { value, .. } => {
            let (p, e) = target.as_ref().expect("select has a target");
            let element = e.as_ref().ok_or_else(|| {
                AgentError::Invalid(format!(
                    "no element at ({:.0}, {:.0}) to select in",
                    p[0], p[1]
                ))
            })?;
            if element.backend_node_id < 0 {
                return Err(AgentError::Invalid(
                    "SELECT needs a DOM element (boxes from a JSON file have none)".into(),
                ));
            }
            let result = page.call_on_node(
                element.backend_node_id,
                SELECT_OPTION_JS,
                vec![json!(value)],
            )?;
            if let Some(error) = result.get("error").and_then(Value::as_str) {
                return Err(AgentError::Invalid(format!(
                    "mark {}: {error}",
                    element.index
                )));
            }
            Ok(done(
                format!("select {value:?} in {}", describe_target(*p, Some(element))),
                &target,
            ))
        }
        WebCommand::Scroll { direction } => {
            let (dx, dy) = (
                f64::from(viewport.width) * 0.8,
                f64::from(viewport.height) * 0.8,
            );
            let (dx, dy) = match direction {
                ScrollDirection::Up => (0.0, -dy),
                ScrollDirection::Down => (0.0, dy),
                ScrollDirection::Left => (-dx, 0.0),
                ScrollDirection::Right => (dx, 0.0),
            };
            page.wheel(dx, dy)?;
            Ok(done(format!("scroll {direction:?}").to_lowercase(), &None))
        }
        WebCommand::Key { key } => {
            page.press_key(key)?;
            Ok(done(format!("press {key}"), &None))
        }
        WebCommand::Navigate { url } => {
            if !config.allow.allows(url) {
                return Err(AgentError::Refused {
                    url: url.clone(),
                    allowed: config.allow.describe(),
                });
            }
            page.navigate(url)?;
            Ok(done(format!("navigate to {url}"), &None))
        }
        WebCommand::Back => {
            page.back()?;
            Ok(done("back".into(), &None))
        }
        WebCommand::Stop { .. } => unreachable!("stop is handled before execution"),
    }
}

fn history_line(command: &WebCommand, executed: Option<&Executed>, outcome: Outcome) -> String {
    let what = executed
        .map(|e| e.description.clone())
        .unwrap_or_else(|| serde_json::to_string(command).unwrap_or_default());
    match outcome {
        Outcome::Executed => what,
        other => format!(
            "{what} ({})",
            serde_json::to_string(&other)
                .unwrap_or_default()
                .trim_matches('"')
        ),
    }
}

/// Writes `trajectory.jsonl` (one line per step, flushed as it goes, so a killed run keeps its
/// steps), the screenshots, `summary.json` and `report.html`.
struct TrajectoryLog {
    dir: Option<PathBuf>,
    file: Option<std::fs::File>,
    records: Vec<StepRecord>,
}

impl TrajectoryLog {
    fn create(dir: Option<&Path>) -> Result<Self, AgentError> {
        let Some(dir) = dir else {
            return Ok(Self {
                dir: None,
                file: None,
                records: Vec::new(),
            });
        };
        std::fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
        let path = dir.join("trajectory.jsonl");
        let file = std::fs::File::create(&path).map_err(|e| AgentError::io(&path, e))?;
        Ok(Self {
            dir: Some(dir.to_path_buf()),
            file: Some(file),
            records: Vec::new(),
        })
    }

    fn save_images(
        &self,
        step: usize,
        observation: &Observation,
    ) -> Result<(Option<String>, Option<String>), AgentError> {
        let Some(dir) = &self.dir else {
            return Ok((None, None));
        };
        let raw = format!("step-{step:03}.png");
        let marked = format!("step-{step:03}-marked.png");
        let path = dir.join(&raw);
        observation
            .screenshot
            .save_with_format(&path, image::ImageFormat::Png)
            .map_err(|e| AgentError::io(&path, e))?;
        observation
            .marks
            .save_png(&dir.join(&marked))
            .map_err(|e| AgentError::io(dir.join(&marked), e))?;
        Ok((Some(raw), Some(marked)))
    }

    fn write(&mut self, record: &StepRecord) -> Result<(), AgentError> {
        if let (Some(file), Some(dir)) = (self.file.as_mut(), &self.dir) {
            let line = serde_json::to_string(record).expect("records serialize");
            writeln!(file, "{line}")
                .and_then(|()| file.flush())
                .map_err(|e| AgentError::io(dir.join("trajectory.jsonl"), e))?;
        }
        self.records.push(record.clone());
        Ok(())
    }

    fn finish(&mut self, summary: &RunSummary) -> Result<(), AgentError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join("summary.json");
        std::fs::write(
            &path,
            serde_json::to_string_pretty(summary).expect("summary serializes"),
        )
        .map_err(|e| AgentError::io(&path, e))?;
        let path = dir.join("report.html");
        std::fs::write(&path, crate::report::render(&self.records, summary))
            .map_err(|e| AgentError::io(&path, e))
    }
}
