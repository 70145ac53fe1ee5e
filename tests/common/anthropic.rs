//! A scripted fake of the Anthropic Messages API, for driving the real Claude Code CLI.
//!
//! Each test gives a script: what the "model" answers turn by turn (tool calls such as
//! Write/Edit/Bash/Read, or text). The fake streams each turn as the real API does (SSE:
//! `message_start`, `content_block_start`/`content_block_delta`/`content_block_stop` for
//! text and for `tool_use` with `input_json_delta`, `message_delta` with `stop_reason`
//! `tool_use` or `end_turn`, `message_stop`), answers `count_tokens` and `models`, and
//! keeps every request, so a test reads the `tool_result` blocks Claude sent back: what
//! was allowed, what was refused and why. Anything else is logged loudly and answered 404.
//!
//! `{cwd}` in a scripted tool input is replaced by Claude's working directory, read from the
//! request's system prompt ("Primary working directory: …"), so a script can name files in
//! a clone whose path the test does not know in advance.
//!
//! It serves plain HTTP inside a test's namespace ([`FakeAnthropic::start`]), HTTPS there with
//! fixtures/tls's certificate as the API does — connections kept alive, SSE chunked one event
//! per chunk ([`FakeAnthropic::start_tls`]) — or on any listener ([`FakeAnthropic::serve`]).
//!
//! Which turn a request is: the number of assistant messages already in its
//! `messages` (the CLI sends the whole conversation each time). Past the script's end the
//! fake ends the conversation with a short text.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::http::{FakeServer, Request, Response};
use super::netns::Netns;

/// One assistant turn.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Tool calls (name, input), answered with `stop_reason: tool_use`.
    Tools(Vec<(String, Value)>),
    /// A text answer that ends the conversation (`stop_reason: end_turn`).
    Text(String),
}

impl Turn {
    /// One tool call.
    pub fn tool(name: &str, input: Value) -> Turn {
        Turn::Tools(vec![(name.to_string(), input)])
    }

    /// `Write` of `content` at `path`.
    pub fn write(path: &str, content: &str) -> Turn {
        Turn::tool("Write", json!({"file_path": path, "content": content}))
    }

    /// `Bash` running `command`.
    pub fn bash(command: &str) -> Turn {
        Turn::tool(
            "Bash",
            json!({"command": command, "description": "scripted by the test"}),
        )
    }
}

/// A `tool_result` block Claude sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    pub tool_use_id: String,
    /// The text of the result (blocks joined).
    pub content: String,
    pub is_error: bool,
}

/// The running fake.
pub struct FakeAnthropic {
    server: FakeServer,
    /// `http` or `https`.
    scheme: &'static str,
    /// Requests the fake did not expect (method and path), for assertions.
    pub unexpected: Arc<Mutex<Vec<String>>>,
    script: Arc<Mutex<Vec<Turn>>>,
}

impl FakeAnthropic {
    /// Starts the fake inside `netns` (127.0.0.1 there) replaying `script`.
    pub fn start(netns: &Netns, script: Vec<Turn>) -> FakeAnthropic {
        FakeAnthropic::serve(netns.bind().expect("bind in the network namespace"), script)
    }

    /// The fake on `listener` (plain HTTP), wherever it was bound — for a client that has
    /// a namespace of its own (a container) and reaches it only through a forward.
    pub fn serve(listener: std::net::TcpListener, script: Vec<Turn>) -> FakeAnthropic {
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&unexpected);
        let script = Arc::new(Mutex::new(script));
        let turns = Arc::clone(&script);
        let server = FakeServer::serve(listener, move |req| answer(req, &turns, &seen));
        FakeAnthropic {
            server,
            scheme: "http",
            unexpected,
            script,
        }
    }

    /// [`FakeAnthropic::start`] over HTTPS, with the test certificate for `127.0.0.1` and
    /// `localhost` that fixtures/tls/ca.pem signed (which the client must be told to
    /// trust), keeping connections alive as the real API does.
    pub fn start_tls(netns: &Netns, script: Vec<Turn>) -> FakeAnthropic {
        let listener = netns.bind().expect("bind in the network namespace");
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&unexpected);
        let script = Arc::new(Mutex::new(script));
        let turns = Arc::clone(&script);
        let server = FakeServer::serve_tls(
            listener,
            &super::crate_path("fixtures/tls/server.pem"),
            &super::crate_path("fixtures/tls/server.key"),
            true,
            move |req| answer(req, &turns, &seen),
        );
        FakeAnthropic {
            server,
            scheme: "https",
            unexpected,
            script,
        }
    }

    /// `http://127.0.0.1:PORT` or `https://…` (reachable only inside the namespace).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.server.port)
    }

    /// Replaces the script (for a script that names something started after the fake).
    pub fn set_script(&self, script: Vec<Turn>) {
        *self.script.lock().expect("lock") = script;
    }

    /// The port it listens on (in the namespace).
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Connections it accepted.
    pub fn connections(&self) -> usize {
        self.server
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `127.0.0.1:PORT`, as `agent.network` host rules and the ledger name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Bodies of the `POST /v1/messages` requests, in order.
    pub fn message_requests(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && is_messages(&r.path))
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    /// Every `tool_result` Claude sent, in conversation order (taken from the longest
    /// conversation seen, which holds all earlier ones).
    pub fn tool_results(&self) -> Vec<ToolResult> {
        let longest = self
            .message_requests()
            .into_iter()
            .max_by_key(|b| b["messages"].as_array().map_or(0, Vec::len));
        let Some(body) = longest else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for message in body["messages"].as_array().into_iter().flatten() {
            for block in message["content"].as_array().into_iter().flatten() {
                if block["type"] != "tool_result" {
                    continue;
                }
                let content = match &block["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                out.push(ToolResult {
                    tool_use_id: block["tool_use_id"].as_str().unwrap_or("").to_string(),
                    content,
                    is_error: block["is_error"].as_bool().unwrap_or(false),
                });
            }
        }
        out
    }
}

fn is_messages(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    path == "/v1/messages"
}

fn answer(req: &Request, script: &Mutex<Vec<Turn>>, unexpected: &Mutex<Vec<String>>) -> Response {
    let path = req.path.split('?').next().unwrap_or(&req.path);
    match (req.method.as_str(), path) {
        ("POST", "/v1/messages") => {}
        ("POST", "/v1/messages/count_tokens") => {
            return Response::json(200, json!({"input_tokens": 100}));
        }
        ("GET", "/v1/models") => {
            return Response::json(
                200,
                json!({"data": [{"type": "model", "id": "claude-fake-1", "display_name": "Fake",
                        "created_at": "2026-01-01T00:00:00Z"}],
                       "has_more": false, "first_id": "claude-fake-1", "last_id": "claude-fake-1"}),
            );
        }
        (method, _) => {
            eprintln!(
                "!!! fake Anthropic API: unexpected request {method} {} — answered 404",
                req.path
            );
            unexpected
                .lock()
                .expect("lock")
                .push(format!("{method} {}", req.path));
            return Response::json(
                404,
                json!({"type": "error", "error": {"type": "not_found_error", "message": "not in the fake"}}),
            );
        }
    }
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("!!! fake Anthropic API: a messages request that is not JSON: {e}");
            return Response::json(
                400,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "not JSON"}}),
            );
        }
    };
    let model = body["model"]
        .as_str()
        .unwrap_or("claude-fake-1")
        .to_string();
    let turn = body["messages"]
        .as_array()
        .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
    let this = script
        .lock()
        .expect("lock")
        .get(turn)
        .cloned()
        .unwrap_or_else(|| Turn::Text("Done.".to_string()));
    let (blocks, stop) = match &this {
        Turn::Tools(calls) => (
            calls
                .iter()
                .enumerate()
                .map(|(i, (name, input))| {
                    let input = with_cwd(input, working_dir(&body).as_deref());
                    json!({"type": "tool_use", "id": format!("toolu_{turn}_{i}"),
                           "name": name, "input": input})
                })
                .collect::<Vec<_>>(),
            "tool_use",
        ),
        Turn::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
    };
    let id = format!("msg_fake_{turn}");
    if body["stream"].as_bool() != Some(true) {
        return Response::json(
            200,
            json!({"id": id, "type": "message", "role": "assistant", "model": model,
                   "content": blocks, "stop_reason": stop, "stop_sequence": null,
                   "usage": {"input_tokens": 100, "output_tokens": 20}}),
        );
    }
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message",
               "role": "assistant", "model": model, "content": [], "stop_reason": null,
               "stop_sequence": null, "usage": {"input_tokens": 100, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, delta) = if block["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": block["text"]}),
            )
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 20}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    let mut sse = String::new();
    for (name, data) in events {
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    Response {
        status: 200,
        content_type: "text/event-stream",
        body: sse.into_bytes(),
        headers: vec![("Cache-Control", "no-cache".to_string())],
    }
}

/// The working directory Claude states in its prompt ("Primary working directory: …",
/// in the system prompt or a system reminder, depending on the project).
fn working_dir(body: &Value) -> Option<String> {
    const MARK: &str = "working directory: ";
    let text = body.to_string();
    let start = text.find(MARK)? + MARK.len();
    let rest = &text[start..];
    // The body is JSON text here: the path ends at an escaped newline or the string's end.
    let end = rest
        .find("\\n")
        .into_iter()
        .chain(rest.find('"'))
        .min()
        .unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// `input` with `{cwd}` replaced in every string.
fn with_cwd(input: &Value, cwd: Option<&str>) -> Value {
    match (input, cwd) {
        (Value::String(s), Some(cwd)) => Value::String(s.replace("{cwd}", cwd)),
        (Value::Array(items), _) => Value::Array(items.iter().map(|v| with_cwd(v, cwd)).collect()),
        (Value::Object(map), _) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_cwd(v, cwd)))
                .collect(),
        ),
        _ => input.clone(),
    }
}
