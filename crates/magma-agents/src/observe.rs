//! What the agent sees: a screenshot and the interactable elements with their boxes, from
//! `DOMSnapshot.captureSnapshot` joined with `Accessibility.getFullAXTree` on `backendNodeId`
//! (or from an OmniParser-format JSON for screens that are not web pages).
//!
//! An element is a candidate when it is an element node of the main frame that is
//! * interactive: `a[href]`, `button`, `input` (not `hidden`), `select`, `textarea`, `summary`,
//!   `[contenteditable]`, an interactive accessibility role (button, link, textbox, checkbox,
//!   radio, combobox, …), DOMSnapshot's `isClickable`, or `cursor: pointer` set on the element
//!   itself (not inherited from its parent, which would mark every child of a link);
//! * visible: `display` not `none`, `visibility` visible, `opacity` > 0, a box larger than 1 px²
//!   that intersects the viewport (the box is clipped to it).
//!
//! `<label>`s are not candidates (the control they label is; clicking either does the same).
//!
//! Duplicates: a candidate whose box has IoU > 0.8 with an earlier kept one is dropped, except that
//! a native control (`input`, `select`, `textarea`, `button`) replaces a non-native one (a styled
//! wrapper around the control). **Order: document order** (the DOM's pre-order), which is the
//! reading order of ordinary pages and is stable between steps; mark `k` is element `k`.
//!
//! Boxes: DOMSnapshot's layout bounds are document coordinates in CSS pixels; the viewport box is
//! the bound minus the document's scroll offset, and screenshot pixels are CSS pixels times the
//! device pixel ratio.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::AgentError;
use crate::page::Page;

/// Accessibility roles that are interactive.
const INTERACTIVE_ROLES: &[&str] = &[
    "button",
    "link",
    "textbox",
    "searchbox",
    "checkbox",
    "radio",
    "combobox",
    "listbox",
    "option",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "tab",
    "switch",
    "slider",
    "spinbutton",
    "treeitem",
];

const NATIVE_CONTROLS: &[&str] = &["input", "select", "textarea", "button"];

const STYLES: [&str; 5] = [
    "display",
    "visibility",
    "opacity",
    "cursor",
    "pointer-events",
];

/// One interactable element.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Element {
    /// Mark number (position in the list).
    pub index: usize,
    /// DevTools `backendNodeId` (stable while the node lives).
    pub backend_node_id: i64,
    /// Lower-case tag name.
    pub tag: String,
    /// Accessibility role (the tag when the node has none).
    pub role: String,
    /// Accessible name (label text, `aria-label`, placeholder, text content).
    pub name: String,
    /// Current value (text of inputs, selected option); never recorded for password fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `type` attribute of `input` elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_type: Option<String>,
    /// Checked state of checkboxes and radios.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<bool>,
    /// `[x1, y1, x2, y2]` in screenshot pixels, clipped to the viewport.
    pub bbox: [f64; 4],
    /// `[x, y, width, height]` in CSS pixels relative to the viewport, unclipped (what
    /// `getBoundingClientRect` reports).
    pub css_rect: [f64; 4],
}

impl Element {
    /// Whether typing into this element would type a password.
    pub fn is_password(&self) -> bool {
        self.input_type.as_deref() == Some("password")
    }

    /// Centre of the box in screenshot pixels.
    pub fn center(&self) -> [f64; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }

    /// Whether the point (screenshot pixels) lies in the box.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.bbox[0] && x <= self.bbox[2] && y >= self.bbox[1] && y <= self.bbox[3]
    }
}

#[derive(Debug, Default, Clone)]
struct AxInfo {
    role: String,
    name: String,
    value: Option<String>,
}

/// The interactable elements of the page's main frame, as described in the module docs.
pub fn extract_elements(page: &Page) -> Result<Vec<Element>, AgentError> {
    let snapshot = page.call(
        "DOMSnapshot.captureSnapshot",
        json!({"computedStyles": STYLES, "includeDOMRects": true, "includePaintOrder": true}),
    )?;
    let ax = page.call("Accessibility.getFullAXTree", json!({}))?;
    let viewport = page.viewport();
    elements_from_snapshot(
        &snapshot,
        &ax,
        viewport.width,
        viewport.height,
        viewport.device_scale_factor,
    )
}

/// The pure part of [`extract_elements`], on the two DevTools answers.
pub fn elements_from_snapshot(
    snapshot: &Value,
    ax_tree: &Value,
    viewport_width: u32,
    viewport_height: u32,
    device_scale_factor: f64,
) -> Result<Vec<Element>, AgentError> {
    let bad = |m: &str| AgentError::Protocol {
        method: "DOMSnapshot.captureSnapshot".into(),
        message: m.to_string(),
    };
    let strings: Vec<&str> = snapshot
        .get("strings")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `strings`"))?
        .iter()
        .map(|s| s.as_str().unwrap_or(""))
        .collect();
    let string = |v: &Value| -> &str {
        v.as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| strings.get(i).copied())
            .unwrap_or("")
    };
    let doc = snapshot
        .pointer("/documents/0")
        .ok_or_else(|| bad("no document"))?;
    let nodes = doc.get("nodes").ok_or_else(|| bad("no `nodes`"))?;
    let layout = doc.get("layout").ok_or_else(|| bad("no `layout`"))?;
    let array = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let node_names = array(nodes, "nodeName");
    let node_types = array(nodes, "nodeType");
    let parents = array(nodes, "parentIndex");
    let backend_ids = array(nodes, "backendNodeId");
    let attributes = array(nodes, "attributes");
    let rare_strings = |key: &str| -> HashMap<usize, String> {
        let rare = nodes.get(key);
        let idx = rare.map(|r| array(r, "index")).unwrap_or_default();
        let val = rare.map(|r| array(r, "value")).unwrap_or_default();
        idx.iter()
            .zip(val.iter())
            .filter_map(|(i, v)| Some((i.as_u64()? as usize, string(v).to_string())))
            .collect()
    };
    let rare_bool = |key: &str| -> std::collections::HashSet<usize> {
        nodes
            .get(key)
            .map(|r| array(r, "index"))
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i.as_u64().map(|i| i as usize))
            .collect()
    };
    // visible text under each element (text nodes folded into their nearest 8 ancestors), for
    // names of elements whose accessible name is empty
    let node_values = array(nodes, "nodeValue");
    let mut inner_text: HashMap<usize, String> = HashMap::new();
    for (i, kind) in node_types.iter().enumerate() {
        if kind.as_i64() != Some(3) {
            continue;
        }
        let text = string(node_values.get(i).unwrap_or(&Value::Null)).trim();
        if text.is_empty() {
            continue;
        }
        let mut at = parents.get(i).and_then(Value::as_i64);
        for _ in 0..8 {
            let Some(p) = at.and_then(|p| usize::try_from(p).ok()) else {
                break;
            };
            let entry = inner_text.entry(p).or_default();
            if entry.len() < 200 {
                if !entry.is_empty() {
                    entry.push(' ');
                }
                entry.push_str(text);
            }
            at = parents.get(p).and_then(Value::as_i64);
        }
    }
    let input_values = rare_strings("inputValue");
    let text_values = rare_strings("textValue");
    let checked = rare_bool("inputChecked");
    let clickable = rare_bool("isClickable");

    let scroll_x = doc
        .get("scrollOffsetX")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let scroll_y = doc
        .get("scrollOffsetY")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);

    // layout entries per node: bounds and styles
    let mut boxes: HashMap<usize, ([f64; 4], Vec<String>)> = HashMap::new();
    let layout_nodes = array(layout, "nodeIndex");
    let bounds = array(layout, "bounds");
    let styles = array(layout, "styles");
    for (k, node) in layout_nodes.iter().enumerate() {
        let Some(node) = node.as_u64().map(|n| n as usize) else {
            continue;
        };
        let b = bounds.get(k).and_then(Value::as_array);
        let Some(b) = b.filter(|b| b.len() == 4) else {
            continue;
        };
        let rect = [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap_or(0.0));
        let style = styles
            .get(k)
            .and_then(Value::as_array)
            .map(|s| s.iter().map(|v| string(v).to_string()).collect())
            .unwrap_or_default();
        // the first layout object of a node is its own box (later ones are text fragments)
        boxes.entry(node).or_insert((rect, style));
    }

    let mut ax_by_node: HashMap<i64, AxInfo> = HashMap::new();
    for n in ax_tree
        .get("nodes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if n.get("ignored").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let Some(id) = n.get("backendDOMNodeId").and_then(Value::as_i64) else {
            continue;
        };
        let text = |key: &str| {
            n.pointer(&format!("/{key}/value"))
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .filter(|s| !s.is_empty())
        };
        ax_by_node.insert(
            id,
            AxInfo {
                role: text("role").unwrap_or_default(),
                name: text("name").unwrap_or_default(),
                value: text("value"),
            },
        );
    }

    let (vw, vh) = (f64::from(viewport_width), f64::from(viewport_height));
    let style_of = |node: usize, name: &str| -> Option<String> {
        let i = STYLES.iter().position(|s| *s == name)?;
        boxes.get(&node).and_then(|(_, s)| s.get(i).cloned())
    };
    let mut kept: Vec<Element> = Vec::new();
    for (node, name_value) in node_names.iter().enumerate() {
        if node_types.get(node).and_then(Value::as_i64) != Some(1) {
            continue;
        }
        let Some((rect, _)) = boxes.get(&node) else {
            continue;
        };
        let tag = string(name_value).to_ascii_lowercase();
        let attrs: HashMap<&str, &str> = attributes
            .get(node)
            .and_then(Value::as_array)
            .map(|a| {
                a.chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| (string(&c[0]), string(&c[1])))
                    .collect()
            })
            .unwrap_or_default();
        let input_type =
            (tag == "input").then(|| attrs.get("type").map_or("text", |t| t).to_ascii_lowercase());
        if input_type.as_deref() == Some("hidden") || tag == "label" {
            continue;
        }
        let backend_id = backend_ids.get(node).and_then(Value::as_i64).unwrap_or(-1);
        let ax = ax_by_node.get(&backend_id).cloned().unwrap_or_default();
        let parent = parents
            .get(node)
            .and_then(Value::as_i64)
            .map(|p| p as usize);
        let own_pointer = style_of(node, "cursor").as_deref() == Some("pointer")
            && parent.and_then(|p| style_of(p, "cursor")).as_deref() != Some("pointer");
        let interactive = matches!(
            tag.as_str(),
            "button" | "input" | "select" | "textarea" | "summary"
        ) || (tag == "a" && attrs.contains_key("href"))
            || attrs.get("contenteditable").is_some_and(|v| *v != "false")
            || INTERACTIVE_ROLES.contains(&ax.role.as_str())
            || clickable.contains(&node)
            || own_pointer;
        if !interactive {
            continue;
        }
        let hidden = style_of(node, "display").as_deref() == Some("none")
            || matches!(
                style_of(node, "visibility").as_deref(),
                Some("hidden" | "collapse")
            )
            || style_of(node, "opacity").and_then(|o| o.parse::<f64>().ok()) == Some(0.0);
        let [x, y, w, h] = *rect;
        let (vx, vy) = (x - scroll_x, y - scroll_y);
        let clipped = [vx.max(0.0), vy.max(0.0), (vx + w).min(vw), (vy + h).min(vh)];
        if hidden || w * h <= 1.0 || clipped[2] <= clipped[0] || clipped[3] <= clipped[1] {
            continue;
        }
        let is_password = input_type.as_deref() == Some("password");
        let name = [
            Some(ax.name.clone()),
            attrs.get("aria-label").map(|s| s.to_string()),
            attrs.get("placeholder").map(|s| s.to_string()),
            attrs.get("title").map(|s| s.to_string()),
            text_values.get(&node).cloned(),
            inner_text.get(&node).cloned(),
        ]
        .into_iter()
        .flatten()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|s| !s.is_empty())
        .unwrap_or_default();
        let value = if is_password {
            None
        } else {
            ax.value
                .clone()
                .or_else(|| input_values.get(&node).cloned())
        };
        let s = device_scale_factor;
        let element = Element {
            index: 0,
            backend_node_id: backend_id,
            role: if ax.role.is_empty() {
                tag.clone()
            } else {
                ax.role.clone()
            },
            tag,
            name,
            value,
            checked: matches!(input_type.as_deref(), Some("checkbox" | "radio"))
                .then(|| checked.contains(&node)),
            input_type,
            bbox: clipped.map(|v| v * s),
            css_rect: [vx, vy, w, h],
        };
        match kept.iter().position(|k| iou(&k.bbox, &element.bbox) > 0.8) {
            None => kept.push(element),
            Some(i) => {
                let native = |e: &Element| NATIVE_CONTROLS.contains(&e.tag.as_str());
                if native(&element) && !native(&kept[i]) {
                    kept[i] = element;
                }
            }
        }
    }
    for (i, e) in kept.iter_mut().enumerate() {
        e.index = i;
    }
    Ok(kept)
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Elements read from an OmniParser `parsed_content_list` JSON (or any box format
/// [`magma_marks::parse_boxes`] reads) for a `width × height` screenshot; such elements have no
/// DOM node (`backend_node_id` −1), so `<select>` and password checks do not apply to them.
pub fn elements_from_boxes(
    json_text: &str,
    origin: &str,
    format: magma_marks::BoxFormat,
    width: u32,
    height: u32,
) -> Result<Vec<Element>, AgentError> {
    let parsed = magma_marks::parse_boxes(json_text, origin, format, width, height)
        .map_err(|e| AgentError::Invalid(e.to_string()))?;
    Ok(parsed
        .boxes
        .iter()
        .enumerate()
        .map(|(index, b)| {
            let [x1, y1, x2, y2] = b.rect.to_xyxy();
            Element {
                index,
                backend_node_id: -1,
                tag: String::new(),
                role: b.kind.clone().unwrap_or_default(),
                name: b.content.clone().unwrap_or_default(),
                value: None,
                input_type: None,
                checked: None,
                bbox: [x1, y1, x2, y2],
                css_rect: [x1, y1, x2 - x1, y2 - y1],
            }
        })
        .collect())
}
