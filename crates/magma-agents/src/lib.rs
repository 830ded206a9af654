//! Agents that act: a web agent driving a real Chromium over the DevTools protocol, and a robot
//! policy loop over a small HTTP environment protocol.
//!
//! * [`run_web_agent`]: observe (screenshot + interactable elements from `DOMSnapshot` and the
//!   accessibility tree), mark ([`magma_marks`]), ask a [`magma_client::ChatPolicy`], parse
//!   ([`magma_actions::ui::WebCommand`]), act with real input events, wait until settled, log.
//! * [`robot`]: episodes against an HTTP environment, per-episode JSON, success rate; offline
//!   replay metrics.

mod cdp;
mod domain;
mod error;
mod observe;
mod page;
mod policy;
mod report;
pub mod robot;
mod web;

pub use cdp::{Browser, CdpClient, LaunchOptions};
pub use domain::AllowList;
pub use error::AgentError;
pub use observe::{elements_from_boxes, elements_from_snapshot, extract_elements, Element};
pub use page::{Page, SettleOptions, Viewport};
pub use policy::ScriptedPolicy;
pub use web::{
    observe, resolve_target, run_web_agent, Confirm, Executed, Observation, Outcome, PromptStyle,
    RunSummary, StepRecord, StepTiming, WebAgentConfig,
};
