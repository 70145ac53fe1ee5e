//! A scripted fake of the Gemini API (`generativelanguage`), for driving the real Gemini
//! CLI: `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (SSE, one
//! `GenerateContentResponse` per `data:` line), `:generateContent` (one JSON answer) and
//! `:countTokens`.
//!
//! Each test gives a script of turns (`anthropic::Turn`): tool calls become `functionCall`
//! parts (with ids `call_<turn>_<i>`), a text ends the conversation. Which turn a request
//! is: the number of `model` contents already in its `contents`. A request that offers no
//! tools (the CLI's model router and next-speaker checks, which ask for JSON) is a side
//! request: it gets a JSON text saying the user speaks next and never advances the script.
//! Every request is kept, so a test reads the `functionResponse` parts the CLI sent back.
//! Anything else is logged loudly and answered 404.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::anthropic::Turn;
use super::http::{FakeServer, Request, Response};
use super::netns::Netns;

/// A function response the CLI sent back: the tool's name and its `response` object.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionResponse {
    pub name: String,
    pub id: Option<String>,
    pub response: Value,
}

/// The running fake.
pub struct FakeGemini {
    server: FakeServer,
    /// Requests the fake did not expect (method and path), for assertions.
    pub unexpected: Arc<Mutex<Vec<String>>>,
}

impl FakeGemini {
    /// Starts the fake inside `netns` (127.0.0.1 there) replaying `script`.
    pub fn start(netns: &Netns, script: Vec<Turn>) -> FakeGemini {
        let listener = netns.bind().expect("bind in the network namespace");
        Self::serve(listener, script)
    }

    /// Serves `script` on `listener`, wherever it is (e.g. this machine's loopback, for a
    /// pod of the fake Kubernetes cluster routed to it).
    pub fn serve(listener: std::net::TcpListener, script: Vec<Turn>) -> FakeGemini {
        let unexpected = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&unexpected);
        let server = FakeServer::serve(listener, move |req| answer(req, &script, &seen));
        FakeGemini { server, unexpected }
    }

    /// `http://127.0.0.1:PORT`, for `GOOGLE_GEMINI_BASE_URL` (no `/v1beta`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    /// Bodies of the generate requests that offered tools (the agent's own turns).
    pub fn agent_requests(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.contains(":")) // model:method
            .filter(|r| !r.path.contains(":countTokens"))
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(offers_tools)
            .collect()
    }

    /// Every `functionResponse` the CLI sent, in conversation order, from the longest
    /// conversation seen.
    pub fn function_responses(&self) -> Vec<FunctionResponse> {
        let longest = self
            .agent_requests()
            .into_iter()
            .max_by_key(|b| b["contents"].as_array().map_or(0, Vec::len));
        let Some(body) = longest else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for content in body["contents"].as_array().into_iter().flatten() {
            for part in content["parts"].as_array().into_iter().flatten() {
                let r = &part["functionResponse"];
                if r.is_object() {
                    out.push(FunctionResponse {
                        name: r["name"].as_str().unwrap_or("").to_string(),
                        id: r["id"].as_str().map(str::to_string),
                        response: r["response"].clone(),
                    });
                }
            }
        }
        out
    }
}

fn offers_tools(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|tools| {
        tools.iter().any(|t| {
            t["functionDeclarations"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        })
    })
}

fn answer(req: &Request, script: &[Turn], unexpected: &Mutex<Vec<String>>) -> Response {
    let path = req.path.split('?').next().unwrap_or(&req.path);
    let method = path.rsplit_once(':').map(|(_, m)| m);
    let streaming = match (req.method.as_str(), method) {
        ("POST", Some("streamGenerateContent")) => true,
        ("POST", Some("generateContent")) => false,
        ("POST", Some("countTokens")) => return Response::json(200, json!({"totalTokens": 100})),
        (m, _) => {
            eprintln!(
                "!!! fake Gemini API: unexpected request {m} {} — answered 404",
                req.path
            );
            unexpected
                .lock()
                .expect("lock")
                .push(format!("{m} {}", req.path));
            return Response::json(
                404,
                json!({"error": {"code": 404, "message": "not in the fake", "status": "NOT_FOUND"}}),
            );
        }
    };
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("!!! fake Gemini API: a request body that is not JSON: {e}");
            return Response::json(
                400,
                json!({"error": {"code": 400, "message": "not JSON", "status": "INVALID_ARGUMENT"}}),
            );
        }
    };
    let turn = body["contents"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|c| c["role"] == "model").count());
    let side = Turn::Text(
        json!({"reasoning": "scripted", "next_speaker": "user", "model_choice": "flash"})
            .to_string(),
    );
    let default_end = Turn::Text("Done.".to_string());
    let this = if offers_tools(&body) {
        script.get(turn).unwrap_or(&default_end)
    } else {
        &side
    };
    let parts: Vec<Value> = match this {
        Turn::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| {
                json!({"functionCall": {"id": format!("call_{turn}_{i}"), "name": name,
                                        "args": args}})
            })
            .collect(),
        Turn::Text(text) => vec![json!({"text": text})],
    };
    let model = path
        .split("/models/")
        .nth(1)
        .and_then(|m| m.split(':').next())
        .unwrap_or("gemini-fake");
    let chunk = json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                        "index": 0}],
        "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20,
                          "totalTokenCount": 120},
        "modelVersion": model,
        "responseId": format!("resp_fake_{turn}"),
    });
    if !streaming {
        return Response::json(200, chunk);
    }
    Response {
        status: 200,
        content_type: "text/event-stream",
        body: format!("data: {chunk}\r\n\r\n").into_bytes(),
        headers: vec![("Cache-Control", "no-cache".to_string())],
    }
}
