//! The official `openai` Python client works against the server unchanged.
//!
//! With `MAGMA_TEST_PYTHON` set (CI sets it to a venv with `openai`), that Python must have the
//! package and the test fails otherwise. Without it, `python3` is tried and, when it lacks
//! `openai`, the test skips with a notice written straight to stderr, so that it shows even
//! though the test harness captures output.

mod common;

use common::*;
use std::io::Write;
use std::process::Command;

#[test]
fn the_openai_python_client_works_unchanged() {
    let configured = std::env::var("MAGMA_TEST_PYTHON").ok();
    let python = configured.clone().unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python).args(["-c", "import openai"]).output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = match &probe {
            // the last line of a traceback says it: "ModuleNotFoundError: No module named 'openai'"
            Ok(o) => String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or_default()
                .to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            configured.is_none(),
            "MAGMA_TEST_PYTHON={python} cannot `import openai`: {why}"
        );
        // not eprintln!: the harness captures that; a direct write shows in every run's log
        let _ = writeln!(
            std::io::stderr(),
            "\nSKIPPED the_openai_python_client_works_unchanged: `{python} -c 'import openai'` failed \
             ({why}); install it with `pip install openai`, or set MAGMA_TEST_PYTHON to a Python \
             that has it\n"
        );
        return;
    }
    let server = TestServer::with_config(|c| c.api_key = Some("test-key".into()));
    let coffee = fixture_image("coffee");
    let expected = server
        .post(
            "/v1/chat/completions",
            image_chat(&coffee, "What is in this image?", 12)
                .to_string()
                .as_bytes(),
            &[("Authorization", "Bearer test-key")],
        )
        .json();
    let dir = std::env::temp_dir().join(format!("magma-serve-openai-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image_path = dir.join("coffee.png");
    std::fs::write(&image_path, png_bytes(&coffee)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let output = Command::new(&python)
        .args([
            script,
            &format!("{}/v1", server.url()),
            image_path.to_str().unwrap(),
        ])
        .output()
        .expect("run the client script");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("client JSON");
    let text = &expected["choices"][0]["message"]["content"];
    assert_eq!(&result["text"], text);
    assert_eq!(&result["streamed"], text);
    assert_eq!(
        result["finish_reason"],
        expected["choices"][0]["finish_reason"]
    );
    assert_eq!(
        result["completion_tokens"],
        expected["usage"]["completion_tokens"]
    );
    assert_eq!(result["models"], serde_json::json!(["magma-tiny-crop"]));
}
