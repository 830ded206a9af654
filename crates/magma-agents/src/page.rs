//! One browser tab: navigation, screenshots, real input events, and waiting until it settles.

use std::time::{Duration, Instant};

use base64::Engine as _;
use image::RgbImage;
use serde_json::{json, Value};

use crate::cdp::CdpClient;
use crate::error::AgentError;

/// Viewport size in CSS pixels and the device pixel ratio; screenshots are
/// `width·dpr × height·dpr` pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Viewport {
    /// CSS width.
    pub width: u32,
    /// CSS height.
    pub height: u32,
    /// Device pixel ratio.
    pub device_scale_factor: f64,
}

impl Default for Viewport {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 800,
            device_scale_factor: 1.0,
        }
    }
}

impl Viewport {
    /// Parses `WxH` (`1280x800`).
    pub fn parse(text: &str, device_scale_factor: f64) -> Result<Self, AgentError> {
        let bad =
            || AgentError::Invalid(format!("viewport {text:?} is not WIDTHxHEIGHT (1280x800)"));
        let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
        let (width, height) = (
            w.trim().parse::<u32>().map_err(|_| bad())?,
            h.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if !(100..=8192).contains(&width) || !(100..=8192).contains(&height) {
            return Err(AgentError::Invalid(format!(
                "viewport {text:?}: each side must be within 100..=8192"
            )));
        }
        if !(device_scale_factor.is_finite() && (0.5..=4.0).contains(&device_scale_factor)) {
            return Err(AgentError::Invalid(format!(
                "device scale factor {device_scale_factor} must be within 0.5..=4"
            )));
        }
        Ok(Self {
            width,
            height,
            device_scale_factor,
        })
    }
}

/// How long to wait for a page to settle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SettleOptions {
    /// Give up after this long (the step goes on, with a `not settled` note).
    pub timeout: Duration,
    /// No network event for this long counts as idle.
    pub network_quiet: Duration,
    /// Layout is sampled this often; two equal samples in a row count as stable.
    pub layout_interval: Duration,
}

impl Default for SettleOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            network_quiet: Duration::from_millis(300),
            layout_interval: Duration::from_millis(100),
        }
    }
}

/// A page target attached over a flattened session.
pub struct Page<'b> {
    client: &'b CdpClient,
    session: String,
    target_id: String,
    viewport: Viewport,
}

/// A cheap layout fingerprint: element count, a hash of every element's rounded box, the scroll
/// position and `readyState`. Equal twice in a row = nothing moves.
const LAYOUT_SIGNATURE_JS: &str = r#"(() => {
  let h = 0;
  const els = document.getElementsByTagName('*');
  for (let i = 0; i < els.length; i++) {
    const r = els[i].getBoundingClientRect();
    h = (Math.imul(h, 31) + Math.round(r.x) * 7 + Math.round(r.y) * 13 + Math.round(r.width) * 17 + Math.round(r.height)) | 0;
  }
  return els.length + ':' + h + ':' + Math.round(scrollX) + ':' + Math.round(scrollY) + ':' + document.readyState;
})()"#;

impl<'b> Page<'b> {
    /// Opens a blank tab with `viewport`, network tracking and document interception (for the
    /// allow-list) enabled.
    pub fn open(client: &'b CdpClient, viewport: Viewport) -> Result<Self, AgentError> {
        let target = client.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = str_field(&target, "targetId", "Target.createTarget")?;
        let attached = client.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        let session = str_field(&attached, "sessionId", "Target.attachToTarget")?;
        let page = Self {
            client,
            session,
            target_id,
            viewport,
        };
        for method in [
            "Page.enable",
            "Network.enable",
            "Runtime.enable",
            "DOM.enable",
        ] {
            page.call(method, json!({}))?;
        }
        page.call(
            "Fetch.enable",
            json!({"patterns": [{"urlPattern": "*", "resourceType": "Document", "requestStage": "Request"}]}),
        )?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": viewport.width,
                "height": viewport.height,
                "deviceScaleFactor": viewport.device_scale_factor,
                "mobile": false,
            }),
        )?;
        Ok(page)
    }

    /// The DevTools connection this page talks over.
    pub fn client(&self) -> &'b CdpClient {
        self.client
    }

    /// The viewport this page emulates.
    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// Sends one method to this page's session.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, AgentError> {
        self.client.call(Some(&self.session), method, params)
    }

    /// Loads `url`; a network error (`errorText`) or a refused navigation is an error.
    pub fn navigate(&self, url: &str) -> Result<(), AgentError> {
        let result = self.call("Page.navigate", json!({"url": url}))?;
        match result.get("errorText").and_then(Value::as_str) {
            Some(reason) if !reason.is_empty() => Err(AgentError::Navigation {
                url: url.to_string(),
                reason: reason.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// `history.back()`.
    pub fn back(&self) -> Result<(), AgentError> {
        self.evaluate("history.back()").map(|_| ())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String, AgentError> {
        Ok(self
            .evaluate("location.href")?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Evaluates an expression and returns its JSON value (exceptions are errors).
    pub fn evaluate(&self, expression: &str) -> Result<Value, AgentError> {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            let text = exception
                .pointer("/exception/description")
                .or_else(|| exception.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("exception");
            return Err(AgentError::Cdp {
                method: "Runtime.evaluate".into(),
                message: text.to_string(),
            });
        }
        Ok(result
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Calls `function` (JavaScript source) with `this` bound to the DOM node `backend_node_id`;
    /// a node that no longer exists is an error naming it.
    pub fn call_on_node(
        &self,
        backend_node_id: i64,
        function: &str,
        arguments: Vec<Value>,
    ) -> Result<Value, AgentError> {
        let resolved = self
            .call("DOM.resolveNode", json!({"backendNodeId": backend_node_id}))
            .map_err(|e| AgentError::Invalid(format!("element {backend_node_id} vanished: {e}")))?;
        let object_id = resolved
            .pointer("/object/objectId")
            .and_then(Value::as_str)
            .ok_or_else(|| AgentError::Invalid(format!("element {backend_node_id} vanished")))?;
        let args: Vec<Value> = arguments.into_iter().map(|v| json!({"value": v})).collect();
        let result = self.call(
            "Runtime.callFunctionOn",
            json!({"objectId": object_id, "functionDeclaration": function,
                   "arguments": args, "returnByValue": true}),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(AgentError::Cdp {
                method: "Runtime.callFunctionOn".into(),
                message: exception
                    .pointer("/exception/description")
                    .and_then(Value::as_str)
                    .unwrap_or("exception")
                    .to_string(),
            });
        }
        Ok(result
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// A PNG screenshot of the viewport, decoded (`width·dpr × height·dpr`).
    pub fn screenshot(&self) -> Result<RgbImage, AgentError> {
        let result = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": false}),
        )?;
        let data = result
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| protocol("Page.captureScreenshot", "no `data`"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| protocol("Page.captureScreenshot", &e.to_string()))?;
        Ok(
            image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
                .map_err(|e| protocol("Page.captureScreenshot", &e.to_string()))?
                .to_rgb8(),
        )
    }

    /// A real left click at `(x, y)` in screenshot pixels: mouse move, press, release.
    pub fn click(&self, x: f64, y: f64) -> Result<(), AgentError> {
        let (cx, cy) = self.to_css(x, y);
        for (kind, buttons) in [("mouseMoved", 0), ("mousePressed", 1), ("mouseReleased", 0)] {
            let mut params = json!({"type": kind, "x": cx, "y": cy, "buttons": buttons});
            if kind != "mouseMoved" {
                params["button"] = json!("left");
                params["clickCount"] = json!(1);
            }
            self.call("Input.dispatchMouseEvent", params)?;
        }
        Ok(())
    }

    /// Scrolls with a mouse wheel at the viewport centre by `(dx, dy)` CSS pixels.
    pub fn wheel(&self, dx: f64, dy: f64) -> Result<(), AgentError> {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseWheel", "x": f64::from(self.viewport.width) / 2.0,
                   "y": f64::from(self.viewport.height) / 2.0, "deltaX": dx, "deltaY": dy}),
        )
        .map(|_| ())
    }

    /// Types `text` as key events, one `keyDown` (with its text) and `keyUp` per character.
    pub fn type_text(&self, text: &str) -> Result<(), AgentError> {
        for ch in text.chars() {
            if ch == '\n' {
                self.press_key("Enter")?;
                continue;
            }
            let s = ch.to_string();
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": "keyDown", "key": s, "text": s, "unmodifiedText": s}),
            )?;
            self.call("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": s}))?;
        }
        Ok(())
    }

    /// Presses and releases a named key (`Enter`, `Tab`, `Escape`, `Backspace`, `Delete`, arrows,
    /// `PageUp`, `PageDown`, `Home`, `End`, `Space`) or a single character.
    pub fn press_key(&self, key: &str) -> Result<(), AgentError> {
        let (key, code, vk, text) = key_definition(key)?;
        let mut down = json!({"type": if text.is_some() {"keyDown"} else {"rawKeyDown"},
            "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk});
        if let Some(t) = text {
            down["text"] = json!(t);
            down["unmodifiedText"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down)?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk,
                   "nativeVirtualKeyCode": vk}),
        )
        .map(|_| ())
    }

    /// Waits until no request has been in flight for [`SettleOptions::network_quiet`] (counted
    /// from this call at the earliest) and two layout samples in a row agree; `Err(Timeout)` names what was still moving.
    pub fn wait_settled(&self, options: &SettleOptions) -> Result<Duration, AgentError> {
        let start = Instant::now();
        let mut last_signature: Option<String> = None;
        loop {
            let (in_flight, quiet) = self.client.network_quiet_for(&self.session);
            // quiet is counted from the call at the earliest: a click's navigation may not have
            // sent its request yet when the first sample is taken
            let quiet = quiet.map_or(start.elapsed(), |q| q.min(start.elapsed()));
            let network_idle = in_flight == 0 && quiet >= options.network_quiet;
            let signature = self
                .evaluate(LAYOUT_SIGNATURE_JS)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            let complete = signature
                .as_deref()
                .is_some_and(|s| s.ends_with(":complete"));
            let stable = signature.is_some() && signature == last_signature;
            if network_idle && stable && complete {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= options.timeout {
                let mut moving = Vec::new();
                if !network_idle {
                    moving.push(format!("{in_flight} request(s) in flight"));
                }
                if !stable {
                    moving.push("the layout kept changing".to_string());
                }
                if !complete {
                    moving.push("the document never finished loading".to_string());
                }
                return Err(AgentError::Timeout {
                    what: format!("waiting for the page to settle ({})", moving.join(", ")),
                    after: options.timeout,
                });
            }
            last_signature = signature;
            std::thread::sleep(options.layout_interval);
        }
    }

    /// Screenshot pixels → CSS pixels.
    pub fn to_css(&self, x: f64, y: f64) -> (f64, f64) {
        let s = self.viewport.device_scale_factor;
        (x / s, y / s)
    }
}

impl Drop for Page<'_> {
    fn drop(&mut self) {
        let _ = self.client.call_with_timeout(
            None,
            "Target.closeTarget",
            json!({"targetId": self.target_id}),
            Duration::from_secs(2),
        );
    }
}

fn str_field(value: &Value, field: &str, method: &str) -> Result<String, AgentError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| protocol(method, &format!("no `{field}` in {value}")))
}

fn protocol(method: &str, message: &str) -> AgentError {
    AgentError::Protocol {
        method: method.to_string(),
        message: message.to_string(),
    }
}

/// DOM `key`, `code`, Windows virtual key code and the text the key inserts.
fn key_definition(name: &str) -> Result<(String, String, u32, Option<String>), AgentError> {
    let named = |key: &str, code: &str, vk: u32, text: Option<&str>| {
        Ok((
            key.to_string(),
            code.to_string(),
            vk,
            text.map(str::to_string),
        ))
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "enter" | "return" => named("Enter", "Enter", 13, Some("\r")),
        "tab" => named("Tab", "Tab", 9, None),
        "escape" | "esc" => named("Escape", "Escape", 27, None),
        "backspace" => named("Backspace", "Backspace", 8, None),
        "delete" | "del" => named("Delete", "Delete", 46, None),
        "space" => named(" ", "Space", 32, Some(" ")),
        "arrowup" | "up" => named("ArrowUp", "ArrowUp", 38, None),
        "arrowdown" | "down" => named("ArrowDown", "ArrowDown", 40, None),
        "arrowleft" | "left" => named("ArrowLeft", "ArrowLeft", 37, None),
        "arrowright" | "right" => named("ArrowRight", "ArrowRight", 39, None),
        "pageup" => named("PageUp", "PageUp", 33, None),
        "pagedown" => named("PageDown", "PageDown", 34, None),
        "home" => named("Home", "Home", 36, None),
        "end" => named("End", "End", 35, None),
        _ => {
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => {
                    let upper = c.to_ascii_uppercase();
                    let vk = if upper.is_ascii_alphanumeric() {
                        upper as u32
                    } else {
                        0
                    };
                    let code = if c.is_ascii_alphabetic() {
                        format!("Key{upper}")
                    } else if c.is_ascii_digit() {
                        format!("Digit{c}")
                    } else {
                        String::new()
                    };
                    Ok((c.to_string(), code, vk, Some(c.to_string())))
                }
                _ => Err(AgentError::Invalid(format!(
                    "unknown key {name:?} (Enter, Tab, Escape, Backspace, Delete, Space, arrows, \
                     PageUp, PageDown, Home, End or one character)"
                ))),
            }
        }
    }
}
