//! The two policies answer alike: a real `magma serve` (in this process, on loopback) queried
//! through [`Endpoint`] gives the same greedy text as [`LocalModel`] on the same fixture model.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use magma_client::{ChatPolicy, ChatRequest, ClientError, Endpoint, LocalModel};
use magma_serve::{ServeConfig, Server};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-parity/models/magma-tiny-crop")
}

fn fixture_image(name: &str) -> image::RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/magma-parity/images")
        .join(format!("{name}.png"));
    image::open(path).expect("fixture image").to_rgb8()
}

/// Starts `magma serve` on 127.0.0.1 in a background thread; returns its base URL.
fn start_server(api_key: Option<&str>) -> String {
    let mut config = ServeConfig::new(model_dir());
    config.api_key = api_key.map(str::to_string);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let server = Server::bind(config, "127.0.0.1:0".parse().unwrap())
                .await
                .expect("server starts");
            addr_tx.send(server.local_addr()).unwrap();
            server
                .run(std::future::pending::<()>())
                .await
                .expect("server runs");
        });
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server address");
    format!("http://{addr}")
}

#[test]
fn endpoint_and_local_model_give_the_same_greedy_answer() {
    let url = start_server(None);
    let mut local = LocalModel::load(&model_dir()).expect("local model");
    let mut remote = Endpoint::new(&url);
    let requests = [
        ChatRequest::new("<image>\nWhat is in this image?")
            .image(fixture_image("coffee"))
            .max_new_tokens(12),
        ChatRequest::new("Compare <image>\nand\n<image>\nplease")
            .image(fixture_image("coffee"))
            .image(fixture_image("astronaut"))
            .max_new_tokens(8)
            .system("You answer briefly."),
        ChatRequest::new("No image here.").max_new_tokens(6),
    ];
    for request in &requests {
        let expected = local.answer(request).expect("local answer");
        assert!(!expected.text.is_empty());
        let got = remote.answer(request).expect("endpoint answer");
        assert_eq!(got.text, expected.text, "request {:?}", request.text);
        assert_eq!(got.finish_reason, expected.finish_reason);
    }
    // the /v1 prefix form of the URL reaches the same route
    let got = Endpoint::new(format!("{url}/v1"))
        .answer(&requests[2])
        .expect("answer via /v1 base");
    assert_eq!(got.text, local.answer(&requests[2]).unwrap().text);
}

#[test]
fn endpoint_errors_name_the_problem() {
    let url = start_server(Some("secret"));
    let request = ChatRequest::new("hello").max_new_tokens(2);

    match Endpoint::new(&url).answer(&request) {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected HTTP 401 without the key, got {other:?}"),
    }
    let ok = Endpoint::new(&url).api_key("secret").answer(&request);
    assert!(ok.is_ok(), "{ok:?}");

    // nothing listens on a port we bound and released
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Endpoint::new(format!("http://{closed}"))
        .answer(&request)
        .unwrap_err();
    assert!(matches!(err, ClientError::Endpoint { .. }), "{err}");
    assert!(err.to_string().contains(&closed.to_string()), "{err}");

    // a server that accepts and never answers
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let err = Endpoint::new(format!("http://{silent_addr}"))
        .timeout(Duration::from_millis(300))
        .answer(&request)
        .unwrap_err();
    assert!(err.to_string().contains("no answer within 0.3 s"), "{err}");
    drop(silent);

    let mismatch = ChatRequest::new("<image> and <image>").image(fixture_image("coffee"));
    let err = Endpoint::new(&url).answer(&mismatch).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 `<image>` placeholder(s) but 1 image(s)"),
        "{err}"
    );
}
