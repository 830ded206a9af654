//! Hub downloads (feature `hub`) against a local imitation of the Hugging Face hub over loopback
//! HTTP: `GET /<org>/<name>/resolve/<revision>/<file>` answering range requests with `ETag` and
//! `X-Repo-Commit`, and large files redirected (302, `X-Linked-Etag`) to a "CDN" path, the way
//! huggingface.co serves LFS files. The downloaded snapshot must load and generate exactly like
//! the fixture folder it was served from.
#![cfg(feature = "hub")]

mod common;

use candle_core::{DType, Device};
use common::fixtures;
use magma_model::hub::{resolve_model_with, HubOptions};
use magma_model::{GenerationParams, MagmaPipeline, ModelError};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One repository of the imitation hub.
struct FakeRepo {
    files: BTreeMap<String, Vec<u8>>,
    /// A gated repository: answers 401 unless `Authorization: Bearer <token>`.
    token: Option<String>,
}

/// The imitation hub: a thread answering one request per connection.
struct FakeHub {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl FakeHub {
    fn start(repos: HashMap<String, FakeRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let repos = Arc::new(repos);
        // the accept loop ends with the test process
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let repos = repos.clone();
                std::thread::spawn(move || {
                    let _ = answer(stream, &repos, addr);
                });
            }
        });
        Self { addr, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: u16, code: &str) -> Self {
        Self {
            status,
            headers: vec![("X-Error-Code", code.to_string())],
            body: code.as_bytes().to_vec(),
        }
    }
}

fn answer(
    stream: TcpStream,
    repos: &HashMap<String, FakeRepo>,
    addr: SocketAddr,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let reply = route(path, &headers, repos, addr);
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Range Not Satisfiable",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

fn route(
    path: &str,
    headers: &HashMap<String, String>,
    repos: &HashMap<String, FakeRepo>,
    addr: SocketAddr,
) -> Reply {
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    match parts.as_slice() {
        // the CDN serves the redirected large files; its URLs are signed, no token needed
        ["cdn", org, name, file] => match repos
            .get(&format!("{org}/{name}"))
            .and_then(|r| r.files.get(*file))
        {
            Some(body) => ranged(body, headers.get("range")),
            None => Reply::error(404, "EntryNotFound"),
        },
        [org, name, "resolve", revision, file] => {
            let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                return Reply::error(404, "RepoNotFound");
            };
            if let Some(token) = &repo.token {
                if headers.get("authorization") != Some(&format!("Bearer {token}")) {
                    return Reply::error(401, "GatedRepo");
                }
            }
            if *revision != "main" && *revision != COMMIT {
                return Reply::error(404, "RevisionNotFound");
            }
            let Some(body) = repo.files.get(*file) else {
                return Reply::error(404, "EntryNotFound");
            };
            let etag = format!("\"{:016x}{:016x}\"", fnv1a(body), body.len());
            if file.ends_with(".safetensors") {
                return Reply {
                    status: 302,
                    headers: vec![
                        ("Location", format!("http://{addr}/cdn/{org}/{name}/{file}")),
                        ("X-Repo-Commit", COMMIT.to_string()),
                        ("X-Linked-Etag", etag),
                        ("X-Linked-Size", body.len().to_string()),
                    ],
                    body: Vec::new(),
                };
            }
            let mut reply = ranged(body, headers.get("range"));
            reply.headers.push(("ETag", etag));
            reply.headers.push(("X-Repo-Commit", COMMIT.to_string()));
            reply
        }
        _ => Reply::error(404, "NotFound"),
    }
}

/// `Range: bytes=a-b` or `bytes=a-` answered with 206 and `Content-Range`; no range: 200.
fn ranged(body: &[u8], range: Option<&String>) -> Reply {
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Reply {
            status: 200,
            headers: Vec::new(),
            body: body.to_vec(),
        };
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = start.parse().unwrap_or(0);
    let end: usize = end
        .parse()
        .unwrap_or(body.len().saturating_sub(1))
        .min(body.len().saturating_sub(1));
    if start > end {
        return Reply::error(416, "RangeNotSatisfiable");
    }
    Reply {
        status: 206,
        headers: vec![(
            "Content-Range",
            format!("bytes {start}-{end}/{}", body.len()),
        )],
        body: body[start..=end].to_vec(),
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn tiny_crop() -> PathBuf {
    fixtures().join("models/magma-tiny-crop")
}

/// Every file of a fixture model folder.
fn folder_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("fixture folder")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("fixture file"))
        })
        .collect()
}

/// The fixture's tensors split over two shards with an index, as large checkpoints are stored.
fn sharded(files: &mut BTreeMap<String, Vec<u8>>) {
    let single = files
        .remove("model.safetensors")
        .expect("model.safetensors");
    let tensors = safetensors::SafeTensors::deserialize(&single).expect("fixture safetensors");
    let mut all = tensors.tensors();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let second = all.split_off(all.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in [all, second].into_iter().enumerate() {
        let name = format!("model-0000{}-of-00002.safetensors", k + 1);
        for (tensor, _) in &shard {
            weight_map.insert(tensor.clone(), serde_json::json!(name));
        }
        files.insert(name, safetensors::serialize(shard, None).expect("shard"));
    }
    let index =
        serde_json::json!({"metadata": {"total_size": single.len()}, "weight_map": weight_map});
    files.insert(
        "model.safetensors.index.json".into(),
        index.to_string().into_bytes(),
    );
}

fn scratch_cache(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("magma-hub-dl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(hub: &FakeHub, cache: &Path) -> HubOptions {
    HubOptions {
        cache_dir: cache.to_path_buf(),
        endpoint: hub.endpoint(),
        token: None,
        offline: false,
        progress: false,
    }
}

/// Greedy ids and text for an image prompt.
fn generate(dir: &Path) -> (Vec<u32>, String) {
    let pipeline = MagmaPipeline::load(dir, DType::F32, &Device::Cpu).expect("pipeline loads");
    let image = image::open(fixtures().join("images/coffee.png"))
        .expect("fixture image")
        .to_rgb8();
    let params = GenerationParams {
        max_new_tokens: 12,
        ..Default::default()
    };
    let out = pipeline
        .generate(
            "<image>\nWhat is in this image?",
            &[image],
            None,
            &params,
            &mut |_, _| ControlFlow::Continue(()),
        )
        .expect("generation");
    (out.generated_ids, out.text)
}

#[test]
fn a_downloaded_model_lands_in_the_cache_layout_and_generates_like_the_fixture() {
    let files = folder_files(&tiny_crop());
    let mut sharded_files = files.clone();
    sharded(&mut sharded_files);
    // an optional file the hub does not have must not fail the download
    sharded_files.remove("special_tokens_map.json");
    let hub = FakeHub::start(HashMap::from([
        (
            "magma-test/tiny-crop".to_string(),
            FakeRepo {
                files: files.clone(),
                token: None,
            },
        ),
        (
            "magma-test/tiny-sharded".to_string(),
            FakeRepo {
                files: sharded_files.clone(),
                token: None,
            },
        ),
    ]));
    let cache = scratch_cache("layout");
    let options = options(&hub, &cache);
    let expected = generate(&tiny_crop());
    assert_eq!(expected.0.len(), 12, "{expected:?}");

    let dir = resolve_model_with("magma-test/tiny-crop", &options).expect("download");
    let repo = cache.join("models--magma-test--tiny-crop");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    for (name, bytes) in &files {
        let link = dir.join(name);
        let target =
            std::fs::read_link(&link).unwrap_or_else(|e| panic!("{name} is no symlink: {e}"));
        assert!(
            target.starts_with("../../blobs"),
            "{name} -> {}",
            target.display()
        );
        assert_eq!(&std::fs::read(&link).unwrap(), bytes, "{name}");
    }
    assert_eq!(generate(&dir), expected);

    // cached now: no request is made, online or offline
    let before = hub.requests();
    assert_eq!(
        resolve_model_with("magma-test/tiny-crop", &options).unwrap(),
        dir
    );
    let offline = HubOptions {
        offline: true,
        ..options.clone()
    };
    assert_eq!(
        resolve_model_with("magma-test/tiny-crop", &offline).unwrap(),
        dir
    );
    assert_eq!(hub.requests(), before);

    let dir =
        resolve_model_with("magma-test/tiny-sharded@main", &options).expect("sharded download");
    for name in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert_eq!(
            &std::fs::read(dir.join(name)).unwrap(),
            &sharded_files[name],
            "{name}"
        );
    }
    assert!(!dir.join("model.safetensors").exists());
    assert!(!dir.join("special_tokens_map.json").exists());
    assert_eq!(generate(&dir), expected);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn missing_gated_and_offline_models_fail_with_clear_errors() {
    let files = folder_files(&tiny_crop());
    let hub = FakeHub::start(HashMap::from([(
        "magma-test/gated".to_string(),
        FakeRepo {
            files,
            token: Some("hf_test_token".into()),
        },
    )]));
    let cache = scratch_cache("errors");
    let options = options(&hub, &cache);

    let err = resolve_model_with("magma-test/absent", &options).unwrap_err();
    assert!(matches!(err, ModelError::HubDownload { .. }), "{err:?}");
    let text = err.to_string();
    for needle in ["magma-test/absent", "config.json", "404", &hub.endpoint()] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    let err = resolve_model_with("magma-test/gated", &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains("HF_TOKEN"), "{err}");
    let with_token = HubOptions {
        token: Some("hf_test_token".into()),
        ..options.clone()
    };
    let dir = resolve_model_with("magma-test/gated", &with_token).expect("token accepted");
    assert!(dir.join("model.safetensors").is_file());

    let before = hub.requests();
    let offline = HubOptions {
        offline: true,
        ..options.clone()
    };
    let err = resolve_model_with("magma-test/other", &offline).unwrap_err();
    assert!(matches!(err, ModelError::HubOffline { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "magma-test/other",
        "HF_HUB_OFFLINE",
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(hub.requests(), before, "offline mode touched the network");
    std::fs::remove_dir_all(&cache).unwrap();
}
