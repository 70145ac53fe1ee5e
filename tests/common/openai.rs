//! A scripted fake of the OpenAI APIs the agent CLIs speak, for driving Codex CLI and
//! opencode (the Responses API, `POST …/responses`, streamed as SSE) and aider (chat
//! completions, `POST …/chat/completions`, streamed or not).
//!
//! Each test gives a script of turns (`anthropic::Turn`: tool calls by name with JSON
//! arguments, or a closing text). The fake answers each turn as the real API does and keeps
//! every request, so a test reads the tool outputs the CLI sent back.
//!
//! Which turn a request is: every call id the fake hands out is `call_<turn>_<i>`, and the
//! CLI sends the whole conversation each time, so the next turn is one past the highest
//! turn among the call ids it echoes. A Responses request that offers no tools (opencode's
//! title generation) is a side request: it gets a short text and never advances the script.
//! aider has no tools at all (it edits through text): see `scripted_replies`. Past the
//! script's end the fake ends with "Done.".
//!
//! Responses events sent: `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.function_call_arguments.delta`/`.done` or
//! `response.output_text.delta`/`.done`, `response.output_item.done`, `response.completed`
//! (with `usage`). Chat completions: `chat.completion.chunk`s with `tool_calls` deltas and a
//! `finish_reason`, then `data: [DONE]`. `GET …/models` is answered; anything else is logged
//! loudly and answered 404.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::anthropic::Turn;
use super::http::{FakeServer, Request, Response};
use super::netns::Netns;

/// The model id the fake reports and the tests ask for.
pub const MODEL: &str = "gpt-4.1";

/// A tool output the CLI sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub call_id: String,
    pub output: String,
}

/// The running fake.
pub struct FakeOpenAi {
    server: FakeServer,
    /// Requests the fake did not expect (method and path), for assertions.
    pub unexpected: Arc<Mutex<Vec<String>>>,
}

impl FakeOpenAi {
    /// Starts the fake inside `netns` (127.0.0.1 there) replaying `script`.
    pub fn start(netns: &Netns, script: Vec<Turn>) -> FakeOpenAi {
        let listener = netns.bind().expect("bind in the network namespace");
        Self::serve(listener, script)
    }

    /// Serves `script` on `listener`, wherever it is (e.g. this machine's loopback, for a
    /// pod of the fake Kubernetes cluster routed to it).
    pub fn serve(listener: std::net::TcpListener, script: Vec<Turn>) -> FakeOpenAi {
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&unexpected);
        let server = FakeServer::serve(listener, move |req| answer(req, &script, &seen));
        FakeOpenAi { server, unexpected }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL the CLIs take.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Bodies of the model requests (responses or chat completions), in order.
    pub fn model_requests(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && endpoint(&r.path).is_some())
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect()
    }

    /// Every tool output the CLI sent, in conversation order, from the longest conversation
    /// seen (which holds all earlier ones): Responses `function_call_output` (and
    /// `custom_tool_call_output`) items, or chat `tool` messages.
    pub fn tool_outputs(&self) -> Vec<ToolOutput> {
        let longest = self
            .model_requests()
            .into_iter()
            .max_by_key(|b| conversation(b).len());
        let Some(body) = longest else {
            return Vec::new();
        };
        conversation(&body)
            .iter()
            .filter(|item| {
                item["role"] == "tool"
                    || item["type"] == "function_call_output"
                    || item["type"] == "custom_tool_call_output"
            })
            .map(|item| {
                let id = item["call_id"].as_str().or(item["tool_call_id"].as_str());
                let content = if item["role"] == "tool" {
                    &item["content"]
                } else {
                    &item["output"]
                };
                ToolOutput {
                    call_id: id.unwrap_or("").to_string(),
                    output: text_of(content),
                }
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Responses,
    Chat,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/responses") {
        Some(Endpoint::Responses)
    } else if path.ends_with("/chat/completions") {
        Some(Endpoint::Chat)
    } else {
        None
    }
}

/// The conversation a request carries: Responses `input` items or chat `messages`.
fn conversation(body: &Value) -> Vec<Value> {
    body["input"]
        .as_array()
        .or(body["messages"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// A string, or the text parts of an array of content parts, joined.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One past the highest turn among the `call_<turn>_<i>` ids the conversation echoes.
fn turn_of(body: &Value) -> usize {
    let text = body.to_string();
    text.match_indices("call_")
        .filter_map(|(at, _)| {
            let rest = &text[at + 5..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let next = rest[digits.len()..].chars().next();
            (next == Some('_'))
                .then(|| digits.parse::<usize>().ok())
                .flatten()
        })
        .max()
        .map_or(0, |t| t + 1)
}

/// Names of the freeform (`"type": "custom"`) tools a Responses request offers (Codex's
/// `apply_patch` for some models): calls to them are `custom_tool_call` items whose
/// `input` is raw text.
fn custom_tools(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "custom")
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

/// For a CLI that edits through text, not tools (aider): how many of the script's text
/// turns the conversation already holds as assistant messages (its prompt carries example
/// assistant messages of its own, so they cannot simply be counted).
fn scripted_replies(body: &Value, script: &[Turn]) -> usize {
    let texts: Vec<&str> = script
        .iter()
        .filter_map(|t| match t {
            Turn::Text(text) => Some(text.trim()),
            Turn::Tools(_) => None,
        })
        .collect();
    conversation(body)
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter(|m| {
            let content = text_of(&m["content"]);
            texts.iter().any(|t| content.trim() == *t)
        })
        .count()
}

fn offers_tools(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|t| !t.is_empty())
}

fn answer(req: &Request, script: &[Turn], unexpected: &Mutex<Vec<String>>) -> Response {
    let path = req.path.split('?').next().unwrap_or(&req.path);
    let kind = match (req.method.as_str(), endpoint(path)) {
        ("POST", Some(kind)) => kind,
        ("GET", _) if path.ends_with("/models") => {
            return Response::json(
                200,
                json!({"object": "list", "data": [{"id": MODEL, "object": "model",
                       "created": 1_767_225_600, "owned_by": "fake"}]}),
            );
        }
        (method, _) => {
            eprintln!(
                "!!! fake OpenAI API: unexpected request {method} {} — answered 404",
                req.path
            );
            unexpected
                .lock()
                .expect("lock")
                .push(format!("{method} {}", req.path));
            return Response::json(
                404,
                json!({"error": {"message": "not in the fake", "type": "invalid_request_error"}}),
            );
        }
    };
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "!!! fake OpenAI API: a request body that is not JSON ({e}); headers {:?}",
                req.headers
            );
            return Response::json(
                400,
                json!({"error": {"message": "not JSON", "type": "invalid_request_error"}}),
            );
        }
    };
    let side = Turn::Text("Scripted title".to_string());
    let default_end = Turn::Text("Done.".to_string());
    let (turn, this) = match kind {
        Endpoint::Chat if !offers_tools(&body) => {
            let turn = scripted_replies(&body, script);
            (turn, script.get(turn).unwrap_or(&default_end))
        }
        _ if offers_tools(&body) => {
            let turn = turn_of(&body);
            (turn, script.get(turn).unwrap_or(&default_end))
        }
        _ => (0, &side),
    };
    let model = body["model"].as_str().unwrap_or(MODEL).to_string();
    match kind {
        Endpoint::Responses => responses(turn, this, &model, &custom_tools(&body)),
        Endpoint::Chat => chat(turn, this, &model, body["stream"].as_bool() == Some(true)),
    }
}

fn sse(events: Vec<Value>) -> Response {
    let mut out = String::new();
    for data in events {
        let name = data["type"].as_str().unwrap_or("message").to_string();
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    Response {
        status: 200,
        content_type: "text/event-stream",
        body: out.into_bytes(),
        headers: vec![("Cache-Control", "no-cache".to_string())],
    }
}

fn responses(turn: usize, this: &Turn, model: &str, custom: &[String]) -> Response {
    let id = format!("resp_fake_{turn}");
    let usage = json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": 120});
    let shell = |status: &str, output: Vec<Value>, usage: Value| {
        json!({"id": id, "object": "response", "created_at": 1_767_225_600, "status": status,
               "model": model, "output": output, "usage": usage,
               "incomplete_details": null, "error": null})
    };
    let mut events = vec![
        json!({"type": "response.created", "response": shell("in_progress", vec![], Value::Null)}),
        json!({"type": "response.in_progress", "response": shell("in_progress", vec![], Value::Null)}),
    ];
    let mut items = Vec::new();
    match this {
        Turn::Tools(calls) => {
            for (i, (name, args)) in calls.iter().enumerate() {
                let item_id = format!("fc_fake_{turn}_{i}");
                let call_id = format!("call_{turn}_{i}");
                if custom.contains(name) {
                    let input = args
                        .as_str()
                        .map_or_else(|| args.to_string(), str::to_string);
                    let item = json!({"type": "custom_tool_call", "id": item_id,
                                      "call_id": call_id, "name": name, "input": input,
                                      "status": "completed"});
                    events.push(
                        json!({"type": "response.output_item.added", "output_index": i,
                                       "item": item}),
                    );
                    events.push(
                        json!({"type": "response.output_item.done", "output_index": i,
                                       "item": item}),
                    );
                    items.push(item);
                    continue;
                }
                let arguments = args.to_string();
                let added = json!({"type": "function_call", "id": item_id, "call_id": call_id,
                                   "name": name, "arguments": "", "status": "in_progress"});
                let done = json!({"type": "function_call", "id": item_id, "call_id": call_id,
                                  "name": name, "arguments": arguments, "status": "completed"});
                events.push(
                    json!({"type": "response.output_item.added", "output_index": i,
                                   "item": added}),
                );
                events.push(json!({"type": "response.function_call_arguments.delta",
                                   "item_id": item_id, "output_index": i, "delta": arguments}));
                events.push(json!({"type": "response.function_call_arguments.done",
                                   "item_id": item_id, "output_index": i,
                                   "arguments": arguments}));
                events.push(
                    json!({"type": "response.output_item.done", "output_index": i,
                                   "item": done}),
                );
                items.push(done);
            }
        }
        Turn::Text(text) => {
            let item_id = format!("msg_fake_{turn}");
            events.push(
                json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "message", "id": item_id, "role": "assistant",
                         "status": "in_progress", "content": []}}),
            );
            events.push(
                json!({"type": "response.content_part.added", "item_id": item_id,
                "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            events.push(
                json!({"type": "response.output_text.delta", "item_id": item_id,
                               "output_index": 0, "content_index": 0, "delta": text,
                               "logprobs": []}),
            );
            events.push(
                json!({"type": "response.output_text.done", "item_id": item_id,
                               "output_index": 0, "content_index": 0, "text": text,
                               "logprobs": []}),
            );
            let done = json!({"type": "message", "id": item_id, "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]});
            events.push(
                json!({"type": "response.output_item.done", "output_index": 0,
                               "item": done}),
            );
            items.push(done);
        }
    }
    events
        .push(json!({"type": "response.completed", "response": shell("completed", items, usage)}));
    for (n, e) in events.iter_mut().enumerate() {
        e["sequence_number"] = json!(n);
    }
    sse(events)
}

fn chat(turn: usize, this: &Turn, model: &str, stream: bool) -> Response {
    let id = format!("chatcmpl-fake-{turn}");
    let usage = json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
    let (message, finish) = match this {
        Turn::Tools(calls) => (
            json!({"role": "assistant", "content": null,
                "tool_calls": calls.iter().enumerate().map(|(i, (name, args))| json!({
                    "index": i, "id": format!("call_{turn}_{i}"), "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}}))
                    .collect::<Vec<_>>()}),
            "tool_calls",
        ),
        Turn::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
    };
    let base = |choices: Value, usage: Value| {
        json!({"id": id, "object": if stream { "chat.completion.chunk" } else { "chat.completion" },
               "created": 1_767_225_600, "model": model, "choices": choices, "usage": usage})
    };
    if !stream {
        let mut message = message;
        if let Some(calls) = message["tool_calls"].as_array_mut() {
            for c in calls {
                c.as_object_mut().map(|o| o.remove("index"));
            }
        }
        return Response::json(
            200,
            base(
                json!([{"index": 0, "message": message, "finish_reason": finish}]),
                usage,
            ),
        );
    }
    let chunks = [
        base(
            json!([{"index": 0, "delta": message, "finish_reason": null}]),
            Value::Null,
        ),
        base(
            json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
            Value::Null,
        ),
        base(json!([]), usage),
    ];
    let mut out = String::new();
    for c in chunks {
        out.push_str(&format!("data: {c}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    Response {
        status: 200,
        content_type: "text/event-stream",
        body: out.into_bytes(),
        headers: vec![("Cache-Control", "no-cache".to_string())],
    }
}
