//! The web agent against local test pages in headless Chromium. The policy in the loop tests is
//! a test double ([`ScriptedPolicy`]): it stands for the model's text answers; the browser, the
//! element extraction, marking, parsing, input events and logging are all real.

mod common;

use std::time::Duration;

use common::{browser, TestServer};
use magma_agents::{
    extract_elements, run_web_agent, AllowList, Outcome, Page, ScriptedPolicy, SettleOptions,
    Viewport, WebAgentConfig,
};
use magma_client::{ChatAnswer, ChatPolicy, ChatRequest, ClientError, Endpoint};
use serde_json::Value;

fn config(url: &str, task: &str, out: Option<&std::path::Path>) -> WebAgentConfig {
    let mut c = WebAgentConfig::new(url, task).unwrap();
    c.out_dir = out.map(|p| p.to_path_buf());
    c.settle = SettleOptions {
        timeout: Duration::from_secs(5),
        ..SettleOptions::default()
    };
    c
}

fn boxes_match_page(dpr: f64) {
    let server = TestServer::start();
    let browser = browser();
    let viewport = Viewport {
        width: 1000,
        height: 700,
        device_scale_factor: dpr,
    };
    let page = Page::open(&browser.client, viewport).unwrap();
    page.navigate(&server.url("/pages/boxes.html")).unwrap();
    page.wait_settled(&SettleOptions::default()).unwrap();
    page.evaluate("window.scrollTo(0, 50)").unwrap();
    page.wait_settled(&SettleOptions::default()).unwrap();
    let elements = extract_elements(&page).unwrap();
    let expected: Vec<Value> = serde_json::from_value(
        page.evaluate(
            "Array.from(document.querySelectorAll('[aria-label^=e-]')).map(e => {\
               const r = e.getBoundingClientRect(); return [e.getAttribute('aria-label'), r.x, r.y, r.width, r.height]; })",
        )
        .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = elements.iter().map(|e| e.name.as_str()).collect();
    // document order; hidden, invisible, type=hidden and the card's children are not candidates,
    // the element far below the viewport is cut
    assert_eq!(
        names,
        [
            "e-link",
            "e-button",
            "e-input",
            "e-textarea",
            "e-select",
            "e-card",
            "e-role",
            "e-check",
            "e-scaled",
            "e-partial"
        ],
        "{elements:#?}"
    );
    let screenshot = page.screenshot().unwrap();
    assert_eq!(screenshot.width(), (1000.0 * dpr) as u32);
    for e in &elements {
        let row = expected
            .iter()
            .find(|r| r[0].as_str() == Some(&e.name))
            .unwrap_or_else(|| panic!("{} has no page rect", e.name));
        let rect: Vec<f64> = (1..5).map(|i| row[i].as_f64().unwrap()).collect();
        for i in 0..4 {
            assert!(
                (e.css_rect[i] - rect[i]).abs() <= 1.0,
                "{}: css rect {:?} vs getBoundingClientRect {:?}",
                e.name,
                e.css_rect,
                rect
            );
        }
        let clipped = [
            rect[0].max(0.0),
            rect[1].max(0.0),
            (rect[0] + rect[2]).min(1000.0),
            (rect[1] + rect[3]).min(700.0),
        ];
        for i in 0..4 {
            assert!(
                (e.bbox[i] - clipped[i] * dpr).abs() <= 1.0,
                "{}: screenshot box {:?} vs page rect {:?} × {dpr}",
                e.name,
                e.bbox,
                clipped
            );
        }
    }
    let check = elements.iter().find(|e| e.name == "e-check").unwrap();
    assert_eq!(
        (check.role.as_str(), check.checked),
        ("checkbox", Some(false))
    );
}

#[test]
fn element_boxes_match_bounding_client_rects_at_dpr_1() {
    boxes_match_page(1.0);
}

#[test]
fn element_boxes_match_bounding_client_rects_at_dpr_2() {
    boxes_match_page(2.0);
}

#[test]
fn scripted_policy_fills_and_submits_a_form() {
    let server = TestServer::start();
    let browser = browser();
    let out = tempfile::tempdir().unwrap();
    // marks in document order: 0 name, 1 email, 2 colour, 3 checkbox, 4 submit
    let mut policy = ScriptedPolicy::new([
        r#"{"action_type": 3, "click_point": (0.1,0.1), "value": "Ada Lovelace"} Mark: 0"#,
        "[textbox] Email -> TYPE: ada@example.com Mark: 1",
        r#"{"action_type": 2, "click_point": (0.0,0.0), "value": "Green"} Mark: 2"#,
        "Coordinate: (0.0, 0.0). Mark: 3",
        r#"{"TAP": {"MARK": 4}}"#,
        "ANSWER: subscribed",
    ]);
    let summary = run_web_agent(
        &browser.client,
        &mut policy,
        &config(
            &server.url("/pages/form.html"),
            "Subscribe as Ada",
            Some(out.path()),
        ),
        None,
    )
    .unwrap();
    assert_eq!(summary.stop_reason, "stopped by the policy", "{summary:#?}");
    assert_eq!(summary.answer.as_deref(), Some("subscribed"));
    assert_eq!(
        summary.outcomes,
        [
            Outcome::Executed,
            Outcome::Executed,
            Outcome::Executed,
            Outcome::Executed,
            Outcome::Executed,
            Outcome::Stopped
        ]
    );
    assert_eq!(
        server.posts(),
        ["name=Ada+Lovelace&email=ada%40example.com&color=green&agree=on"]
    );
    assert!(summary.final_url.ends_with("/submit"));
    // the trajectory has every step with its files, the history reaches the prompt
    let lines: Vec<Value> = std::fs::read_to_string(out.path().join("trajectory.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    for line in &lines {
        let marked = line["marked_screenshot"].as_str().unwrap();
        assert!(out.path().join(marked).is_file());
    }
    assert_eq!(lines[0]["elements"].as_array().unwrap().len(), 5);
    assert_eq!(lines[0]["elements"][2]["tag"], "select");
    assert!(lines[1]["prompt"]
        .as_str()
        .unwrap()
        .contains("type \"Ada Lovelace\""));
    assert!(policy.prompts[0].contains("Subscribe as Ada"));
    let report = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert_eq!(report.matches("<div class=step>").count(), 6);
    assert!(report.contains("step-004-marked.png"));
    // the executed actions are drawn on the screenshots (a circle at each point)
    assert_eq!(report.matches("<circle cx=\"").count(), 5);
}

fn clicks_land(dpr: f64) {
    let server = TestServer::start();
    let browser = browser();
    let mut c = config(&server.url("/pages/click.html"), "click", None);
    c.viewport = Viewport {
        width: 800,
        height: 600,
        device_scale_factor: dpr,
    };
    c.max_steps = 2;
    // a point and a mark (the button at 300..420 × 200..260)
    let mut policy = ScriptedPolicy::new(["(0.25, 0.75)", "Mark: 0"]);
    let page_client = &browser.client;
    let summary = run_web_agent(page_client, &mut policy, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::Executed, Outcome::Executed]);
    // read the page's click log through a second tab? the agent's tab is closed; so re-run the
    // same clicks on an open page and read them there
    let page = Page::open(&browser.client, c.viewport).unwrap();
    page.navigate(&server.url("/pages/click.html")).unwrap();
    page.wait_settled(&SettleOptions::default()).unwrap();
    let observation = magma_agents::observe(&page).unwrap();
    let size = [
        observation.screenshot.width(),
        observation.screenshot.height(),
    ];
    assert_eq!(size, [(800.0 * dpr) as u32, (600.0 * dpr) as u32]);
    for answer in ["(0.25, 0.75)", "Mark: 0"] {
        let command = magma_actions::ui::WebCommand::parse(answer).unwrap();
        let (point, _) =
            magma_agents::resolve_target(command.target().unwrap(), &observation.elements, size)
                .unwrap();
        page.click(point[0], point[1]).unwrap();
    }
    let clicks = page.evaluate("window.clicks").unwrap();
    let clicks = clicks.as_array().unwrap();
    assert_eq!(clicks.len(), 2, "{clicks:?}");
    let xy = |i: usize| {
        (
            clicks[i]["x"].as_f64().unwrap(),
            clicks[i]["y"].as_f64().unwrap(),
        )
    };
    let (x, y) = xy(0);
    assert!(
        (x - 200.0).abs() <= 1.0 && (y - 450.0).abs() <= 1.0,
        "{clicks:?}"
    );
    let (x, y) = xy(1);
    assert!(
        (x - 360.0).abs() <= 1.0 && (y - 230.0).abs() <= 1.0,
        "{clicks:?}"
    );
    assert_eq!(clicks[1]["target"], "target");
    assert_eq!(clicks[0]["trusted"], true);
}

#[test]
fn clicks_land_where_asked_at_dpr_1() {
    clicks_land(1.0);
}

#[test]
fn clicks_land_where_asked_at_dpr_2() {
    clicks_land(2.0);
}

#[test]
fn navigation_outside_the_allowed_domain_is_refused() {
    let server = TestServer::start();
    let other = TestServer::start();
    *server.recorded.other_origin.lock().unwrap() = other.url("");
    let browser = browser();
    let start = server.url("/pages/links.html");
    let out = tempfile::tempdir().unwrap();
    let mut c = config(&start, "leave", Some(out.path()));
    c.max_steps = 3;
    let mut policy = ScriptedPolicy::new([
        format!("GOTO: {}", other.url("/pages/form.html")),
        // the link to the other origin (mark 1): the click happens, the document load is blocked
        "Mark: 1".to_string(),
        "Mark: 0".to_string(),
    ]);
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(
        summary.outcomes,
        [Outcome::Refused, Outcome::Refused, Outcome::Executed],
        "{}",
        std::fs::read_to_string(out.path().join("trajectory.jsonl")).unwrap()
    );
    assert_eq!(summary.final_url, server.url("/pages/form.html"));
    // allowing the other origin explicitly lets the same navigation through
    let mut c = config(&start, "leave", None);
    c.allow = AllowList::new([server.url(""), other.url("")]).unwrap();
    c.max_steps = 1;
    let mut policy = ScriptedPolicy::new([format!("GOTO: {}", other.url("/pages/form.html"))]);
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::Executed]);
    assert_eq!(summary.final_url, other.url("/pages/form.html"));
}

#[test]
fn the_loop_stops_at_max_steps() {
    let server = TestServer::start();
    let browser = browser();
    let mut c = config(&server.url("/pages/boxes.html"), "scroll forever", None);
    c.max_steps = 3;
    let mut policy = ScriptedPolicy::new(["SCROLL: DOWN"; 10]);
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.stop_reason, "max steps (3) reached");
    assert_eq!(policy.prompts.len(), 3);
}

#[test]
fn password_fields_need_allow_passwords() {
    let server = TestServer::start();
    let browser = browser();
    let mut c = config(&server.url("/pages/login.html"), "log in", None);
    c.max_steps = 1;
    let answer = r#"{"action_type": 3, "click_point": (0.0,0.0), "value": "hunter2"} Mark: 1"#;
    let summary = run_web_agent(
        &browser.client,
        &mut ScriptedPolicy::new([answer]),
        &c,
        None,
    )
    .unwrap();
    assert_eq!(summary.outcomes, [Outcome::Refused]);
    c.allow_passwords = true;
    let summary = run_web_agent(
        &browser.client,
        &mut ScriptedPolicy::new([answer]),
        &c,
        None,
    )
    .unwrap();
    assert_eq!(summary.outcomes, [Outcome::Executed]);
    // the value of a password field is never read into the observation
    let page = Page::open(&browser.client, c.viewport).unwrap();
    page.navigate(&server.url("/pages/login.html")).unwrap();
    page.wait_settled(&SettleOptions::default()).unwrap();
    page.evaluate("document.getElementById('pass').value = 'secret'")
        .unwrap();
    let elements = extract_elements(&page).unwrap();
    assert!(elements[1].is_password());
    assert_eq!(elements[1].value, None);
}

struct FailingPolicy;

impl ChatPolicy for FailingPolicy {
    fn answer(&mut self, _: &ChatRequest) -> Result<ChatAnswer, ClientError> {
        Err(ClientError::Endpoint {
            url: "test".into(),
            message: "connection reset".into(),
        })
    }
    fn describe(&self) -> String {
        "failing".into()
    }
}

/// Answers after a delay (a slow model), so the page can change meanwhile.
struct SlowPolicy(ScriptedPolicy, Duration);

impl ChatPolicy for SlowPolicy {
    fn answer(&mut self, r: &ChatRequest) -> Result<ChatAnswer, ClientError> {
        std::thread::sleep(self.1);
        self.0.answer(r)
    }
    fn describe(&self) -> String {
        "slow".into()
    }
}

#[test]
fn bad_input_is_a_logged_step_outcome() {
    let server = TestServer::start();
    let browser = browser();
    let out = tempfile::tempdir().unwrap();

    // unreachable start URL (a loopback port that was just closed)
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = config(
        &format!("http://127.0.0.1:{closed_port}/"),
        "x",
        Some(out.path()),
    );
    let summary = run_web_agent(
        &browser.client,
        &mut ScriptedPolicy::new(["STOP"]),
        &c,
        None,
    )
    .unwrap();
    assert_eq!(summary.outcomes, [Outcome::NavigationFailed]);
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(out.path().join("trajectory.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("ERR_CONNECTION_REFUSED"),
        "{line}"
    );

    // a page that never settles: observed anyway, the note is logged
    let mut c = config(&server.url("/pages/never_settles.html"), "x", None);
    c.settle.timeout = Duration::from_millis(800);
    c.max_steps = 1;
    let mut policy = ScriptedPolicy::new(["Mark: 0"]);
    let out2 = tempfile::tempdir().unwrap();
    c.out_dir = Some(out2.path().to_path_buf());
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::Executed]);
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(out2.path().join("trajectory.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        line["settle_note"]
            .as_str()
            .unwrap()
            .contains("layout kept changing"),
        "{line}"
    );

    // no parsable action, an unknown mark, then the policy ends
    let mut c = config(&server.url("/pages/form.html"), "x", None);
    c.max_steps = 4;
    let mut policy = ScriptedPolicy::new(["I am not sure what to do.", "Mark: 40", "STOP"]);
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(
        summary.outcomes,
        [Outcome::Unparsable, Outcome::ActionFailed, Outcome::Stopped]
    );

    // an element that vanished between observation and action
    let mut c = config(&server.url("/pages/vanish.html"), "x", None);
    c.max_steps = 1;
    let mut policy = SlowPolicy(
        ScriptedPolicy::new([
            r#"{"action_type": 2, "click_point": (0.0,0.0), "value": "Large"} Mark: 0"#,
        ]),
        Duration::from_secs(3),
    );
    let out3 = tempfile::tempdir().unwrap();
    c.out_dir = Some(out3.path().to_path_buf());
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::ActionFailed]);
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(out3.path().join("trajectory.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        line["reason"].as_str().unwrap().contains("vanished"),
        "{line}"
    );
    assert_eq!(line["elements"][0]["tag"], "select");

    // a policy that keeps failing: three logged errors, then the run ends cleanly
    let mut c = config(&server.url("/pages/form.html"), "x", None);
    c.max_steps = 10;
    let summary = run_web_agent(&browser.client, &mut FailingPolicy, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::PolicyError; 3]);
    assert_eq!(summary.stop_reason, "the policy failed 3 times in a row");

    // an endpoint answering HTTP 500, and one that times out
    c.max_steps = 1;
    let mut broken = Endpoint::new(server.url("/broken"));
    let summary = run_web_agent(&browser.client, &mut broken, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::PolicyError]);
    let mut slow = Endpoint::new(server.url("/slow")).timeout(Duration::from_secs(1));
    let out4 = tempfile::tempdir().unwrap();
    c.out_dir = Some(out4.path().to_path_buf());
    let summary = run_web_agent(&browser.client, &mut slow, &c, None).unwrap();
    assert_eq!(summary.outcomes, [Outcome::PolicyError]);
    let line: Value = serde_json::from_str(
        std::fs::read_to_string(out4.path().join("trajectory.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains("no answer within 1 s"),
        "{line}"
    );
}

#[test]
fn the_form_task_through_magma_serve_with_the_tiny_model_logs_every_step() {
    // the fixture model has random weights: its answers are noise, so the steps may be
    // unparsable or miss; what must hold is the loop (no policy errors), parsing and logging
    let (addr, stop, thread) = common::magma_serve();
    let server = TestServer::start();
    let browser = browser();
    let out = tempfile::tempdir().unwrap();
    let mut c = config(
        &server.url("/pages/form.html"),
        "Subscribe as Ada",
        Some(out.path()),
    );
    c.max_steps = 3;
    c.max_new_tokens = 16;
    let mut policy = Endpoint::new(format!("http://{addr}"));
    let summary = run_web_agent(&browser.client, &mut policy, &c, None).unwrap();
    assert!(!summary.outcomes.is_empty());
    assert!(
        !summary.outcomes.contains(&Outcome::PolicyError),
        "{summary:#?}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(out.path().join("trajectory.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), summary.steps);
    for line in &lines {
        assert!(line["raw_answer"].is_string(), "{line}");
        assert_eq!(line["elements"].as_array().unwrap().len(), 5);
    }
    drop(stop);
    thread.join().unwrap();
}
