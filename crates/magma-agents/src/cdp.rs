//! A thin Chrome DevTools Protocol client: one WebSocket to the browser, flattened target
//! sessions, a blocking `call`, and the few event-driven states the agent needs (in-flight
//! network requests per session, the navigation allow-list enforced through `Fetch`).
//!
//! The socket runs on its own thread with a single-threaded tokio runtime; callers stay
//! synchronous (the policy may be a blocking model run). Why not `chromiumoxide`: its generated
//! bindings cost far more build time than the dozen methods used here (see `docs/agents.md`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::domain::AllowList;
use crate::error::AgentError;

/// How long one CDP call may take before it is reported as timed out.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Network activity of one target session, kept up to date from `Network.*` events.
#[derive(Debug, Default)]
struct NetworkState {
    in_flight: HashSet<String>,
    last_activity: Option<Instant>,
}

/// State the socket thread updates from events and callers read.
#[derive(Default)]
struct Shared {
    network: HashMap<String, NetworkState>,
    allow: Option<AllowList>,
    refused: VecDeque<String>,
    closed: Option<String>,
}

type Reply = mpsc::Sender<Result<Value, AgentError>>;

struct Outgoing {
    id: u64,
    text: String,
    reply: Reply,
}

/// A connection to a browser's DevTools endpoint.
pub struct CdpClient {
    outgoing: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Mutex<Shared>>,
    next_id: AtomicU64,
}

impl CdpClient {
    /// Connects to a browser WebSocket URL (`ws://127.0.0.1:PORT/devtools/browser/ID`).
    pub fn connect(ws_url: &str) -> Result<Self, AgentError> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let url = ws_url.to_string();
        let thread_shared = shared.clone();
        let thread_tx = tx.clone();
        std::thread::Builder::new()
            .name("cdp-socket".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(socket_loop(url, rx, thread_tx, thread_shared, ready_tx));
            })
            .map_err(|e| AgentError::Browser(format!("cannot start the CDP thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(AgentError::Browser(message)),
            Err(_) => {
                return Err(AgentError::Browser(format!(
                    "no WebSocket connection to {ws_url} within 15 s"
                )))
            }
        }
        Ok(Self {
            outgoing: tx,
            shared,
            next_id: AtomicU64::new(1),
        })
    }

    /// Sends `method` with `params` (to a target session when given) and waits for its result.
    pub fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        self.call_with_timeout(session, method, params, CALL_TIMEOUT)
    }

    /// [`call`](Self::call) with an explicit timeout.
    pub fn call_with_timeout(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, AgentError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = Value::String(s.to_string());
        }
        let (reply, result) = mpsc::channel();
        let closed = || {
            AgentError::Browser(
                self.shared
                    .lock()
                    .ok()
                    .and_then(|s| s.closed.clone())
                    .unwrap_or_else(|| "the DevTools connection is closed".into()),
            )
        };
        self.outgoing
            .send(Outgoing {
                id,
                text: message.to_string(),
                reply,
            })
            .map_err(|_| closed())?;
        match result.recv_timeout(timeout) {
            Ok(r) => r.map_err(|e| match e {
                AgentError::Cdp { message, .. } => AgentError::Cdp {
                    method: method.to_string(),
                    message,
                },
                other => other,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(AgentError::Timeout {
                what: format!("CDP {method}"),
                after: timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(closed()),
        }
    }

    /// Requests in flight in `session` and the time since its last network event.
    pub fn network_quiet_for(&self, session: &str) -> (usize, Option<Duration>) {
        let shared = self.shared.lock().expect("cdp state lock");
        match shared.network.get(session) {
            None => (0, None),
            Some(n) => (n.in_flight.len(), n.last_activity.map(|t| t.elapsed())),
        }
    }

    /// Sets the navigation allow-list: document requests elsewhere fail with `BlockedByClient`
    /// (sessions must have `Fetch.enable`d document interception).
    pub fn set_allow_list(&self, allow: AllowList) {
        self.shared.lock().expect("cdp state lock").allow = Some(allow);
    }

    /// Document URLs refused since the last call.
    pub fn take_refused(&self) -> Vec<String> {
        self.shared
            .lock()
            .expect("cdp state lock")
            .refused
            .drain(..)
            .collect()
    }
}

async fn socket_loop(
    url: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    tx: tokio::sync::mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Mutex<Shared>>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    // screenshots and DOM snapshots of large pages exceed tungstenite's 16 MiB frame default
    let config = WebSocketConfig::default()
        .max_message_size(Some(512 << 20))
        .max_frame_size(None);
    let socket = match tokio_tungstenite::connect_async_with_config(&url, Some(config), true).await
    {
        Ok((socket, _)) => socket,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot connect to {url}: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // MAGMA_CDP_TRACE=1 prints every protocol message (screenshots shortened) to stderr
    let trace = std::env::var_os("MAGMA_CDP_TRACE").is_some_and(|v| v != "0");
    let (mut sink, mut stream) = socket.split();
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    // ids of calls the socket thread makes itself (Fetch continue/fail); their replies are dropped.
    // Chromium wants ids that fit an int32, so they start at 10^9, far above the callers' ids.
    let internal_ids = AtomicU64::new(1_000_000_000);
    let reason = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(out) => {
                    if trace {
                        eprintln!("cdp > {}", out.text.chars().take(400).collect::<String>());
                    }
                    if let Err(e) = sink.send(Message::text(out.text)).await {
                        let _ = out.reply.send(Err(AgentError::Browser(format!("CDP send failed: {e}"))));
                        break format!("CDP send failed: {e}");
                    }
                    pending.insert(out.id, out.reply);
                }
                None => break "the client was dropped".to_string(),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if trace {
                        eprintln!("cdp < {}", text.as_str().chars().take(400).collect::<String>());
                    }
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    if let Some(id) = value.get("id").and_then(Value::as_u64) {
                        if let Some(reply) = pending.remove(&id) {
                            let result = match value.get("error") {
                                Some(error) => Err(AgentError::Cdp {
                                    method: String::new(),
                                    message: error.get("message").and_then(Value::as_str)
                                        .unwrap_or("unknown error").to_string(),
                                }),
                                None => Ok(value.get("result").cloned().unwrap_or(Value::Null)),
                            };
                            let _ = reply.send(result);
                        }
                    } else if let Some(follow_up) = on_event(&value, &shared) {
                        let (reply, _) = mpsc::channel();
                        let id = internal_ids.fetch_add(1, Ordering::Relaxed);
                        let mut message = follow_up;
                        message["id"] = json!(id);
                        let _ = tx.send(Outgoing { id, text: message.to_string(), reply });
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "the browser closed the DevTools connection".to_string(),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("DevTools connection failed: {e}"),
            }
        }
    };
    if let Ok(mut s) = shared.lock() {
        s.closed = Some(reason.clone());
    }
    for (_, reply) in pending {
        let _ = reply.send(Err(AgentError::Browser(reason.clone())));
    }
}

/// Updates the shared state from one event; returns a command to send in answer (Fetch).
fn on_event(event: &Value, shared: &Mutex<Shared>) -> Option<Value> {
    let method = event.get("method")?.as_str()?;
    let params = event.get("params")?;
    let session = event.get("sessionId").and_then(Value::as_str).unwrap_or("");
    let request_id = || params.get("requestId").and_then(Value::as_str);
    let mut shared = shared.lock().ok()?;
    match method {
        "Network.requestWillBeSent" => {
            let n = shared.network.entry(session.to_string()).or_default();
            n.in_flight.insert(request_id()?.to_string());
            n.last_activity = Some(Instant::now());
        }
        "Network.loadingFinished" | "Network.loadingFailed" => {
            let n = shared.network.entry(session.to_string()).or_default();
            n.in_flight.remove(request_id()?);
            n.last_activity = Some(Instant::now());
        }
        "Network.responseReceived" | "Network.dataReceived" => {
            let n = shared.network.entry(session.to_string()).or_default();
            n.last_activity = Some(Instant::now());
        }
        "Fetch.requestPaused" => {
            let url = params.pointer("/request/url")?.as_str()?.to_string();
            let id = request_id()?.to_string();
            let allowed = shared.allow.as_ref().is_none_or(|a| a.allows(&url));
            let command = if allowed {
                json!({"method": "Fetch.continueRequest", "params": {"requestId": id}})
            } else {
                shared.refused.push_back(url);
                json!({"method": "Fetch.failRequest",
                       "params": {"requestId": id, "errorReason": "BlockedByClient"}})
            };
            let mut command = command;
            command["sessionId"] = Value::String(session.to_string());
            return Some(command);
        }
        _ => {}
    }
    None
}

/// Options for launching Chromium.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The browser binary; `None` searches `$MAGMA_CHROMIUM`, then `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH`.
    pub binary: Option<PathBuf>,
    /// Show the window (needs a display).
    pub headful: bool,
}

/// A Chromium process with its DevTools connection; the process and its fresh profile folder
/// are removed on drop.
pub struct Browser {
    /// The DevTools connection.
    pub client: CdpClient,
    /// `Browser.getVersion`'s product string.
    pub version: String,
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and the flags that keep it quiet on a closed
    /// network (no background downloads, updates, sync or QUIC probes).
    pub fn launch(options: &LaunchOptions) -> Result<Self, AgentError> {
        let binary = match &options.binary {
            Some(b) => b.clone(),
            None => find_chromium()?,
        };
        let profile = tempfile::Builder::new()
            .prefix("magma-chromium-")
            .tempdir()
            .map_err(|e| AgentError::Browser(format!("cannot create a profile folder: {e}")))?;
        let mut command = Command::new(&binary);
        if !options.headful {
            command.arg("--headless");
        }
        command
            .args([
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| AgentError::Browser(format!("cannot start {}: {e}", binary.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (url_tx, url_rx) = mpsc::channel();
        // keeps draining stderr for the browser's lifetime so it never blocks on a full pipe
        std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = url_tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                } else {
                    tracing::debug!(target: "chromium", "{line}");
                }
            }
        });
        let ws_url = match url_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                return Err(AgentError::Browser(format!(
                    "{} printed no DevTools URL within 30 s (exit status {status:?})",
                    binary.display()
                )));
            }
        };
        let client = match CdpClient::connect(&ws_url) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let version = client
            .call(None, "Browser.getVersion", json!({}))?
            .get("product")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        Ok(Self {
            client,
            version,
            child,
            profile,
        })
    }

    /// The profile folder of this run.
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ =
            self.client
                .call_with_timeout(None, "Browser.close", json!({}), Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_chromium() -> Result<PathBuf, AgentError> {
    if let Some(path) = std::env::var_os("MAGMA_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let names = ["chromium", "chromium-browser", "google-chrome", "chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(AgentError::Browser(
        "no Chromium found (looked for $MAGMA_CHROMIUM, chromium, chromium-browser, google-chrome \
         on PATH); install it (`apt-get install chromium`) or pass --chromium PATH"
            .into(),
    ))
}
