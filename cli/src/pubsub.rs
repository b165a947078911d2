//! `syncws pubsub ADDR`: topics over WebSocket, on the library's [`Hub`].
//!
//! A WebSocket to `ws://ADDR/<topic>` subscribes that socket to `<topic>`
//! (the percent-decoded path without its leading `/`; the query string is
//! ignored; an empty topic is refused with 400). Every Text or Binary
//! message it sends is published to `<topic>`, its sender included, with
//! its type kept. `GET /` answers the topics and their subscriber counts as
//! JSON: `{"topics":[{"name":"...","subscribers":N}, ...]}`.
//!
//! With `--redis URL` the hub joins the other nodes that use that Redis
//! (the library's `cluster` module): a publish on any node reaches every
//! node's subscribers, at most once; `GET /` still counts this node's own
//! subscribers only.
//!
//! A subscriber whose backlog passes `--max-backlog` gets
//! `--backlog-policy`: closed with 1008 (the default) or skipped for that
//! message.

use std::sync::Arc;

use syncws::rustls::ServerConfig;
use syncws::{
    BacklogPolicy, Config, HttpTrait, Hub, Listener, OwnedMessage, Prepared, Request, Response, Result, Running,
    WsHandshake, WsOption, WsTrait,
};

use crate::common::{HttpFlags, Routes};
use crate::static_files::percent_decode;

/// `--backlog-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Policy {
    /// Close the subscriber with 1008.
    #[default]
    Close,
    /// Skip the message for that subscriber, and count it.
    Skip,
}

impl From<Policy> for BacklogPolicy {
    fn from(p: Policy) -> BacklogPolicy {
        match p {
            Policy::Close => BacklogPolicy::Close,
            Policy::Skip => BacklogPolicy::Skip,
        }
    }
}

/// The topic a request path names: percent-decoded, without its leading
/// `/` and query string; `None` if empty or not UTF-8.
pub fn topic_of(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or("");
    let raw = path.strip_prefix('/').unwrap_or(path);
    let topic = String::from_utf8(percent_decode(raw)?).ok()?;
    (!topic.is_empty()).then_some(topic)
}

/// One connection: subscribed to its path's topic, publishing what it
/// sends there.
struct Member {
    hub: Hub,
    topic: String,
}

impl WsTrait for Member {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        match topic_of(&req.path) {
            Some(topic) => {
                self.topic = topic;
                WsHandshake::build_request(req)
            }
            None => Ok(Response::text(400, "the path names the topic: ws://HOST/<topic>\n")),
        }
    }

    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.hub.subscribe(&shake.sender, &self.topic);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        if let Some(msg) = Prepared::from_message(&msg) {
            let report = self.hub.publish(&self.topic, &msg);
            if report.closed + report.dropped > 0 {
                log::debug!("publish to {:?}: {report:?}", self.topic);
            }
        }
        Ok(())
    }
}

/// `GET /`: the topics as JSON.
struct TopicList(Hub);

impl HttpTrait for TopicList {
    fn operate(&mut self, req: &mut Request) -> Result<Response> {
        Ok(match (req.method.as_str(), req.path.split('?').next().unwrap_or("")) {
            ("GET" | "HEAD", "/") => Response::new(200).with_body(topics_json(&self.0), "application/json"),
            ("GET" | "HEAD", _) => Response::text(404, "not found\n"),
            _ => Response::text(405, "only GET\n").with_header("Allow", "GET"),
        })
    }
}

/// `{"topics":[{"name":"...","subscribers":N}, ...]}`, sorted by name.
pub fn topics_json(hub: &Hub) -> String {
    let items: Vec<String> = hub
        .topics()
        .iter()
        .map(|(name, n)| format!("{{\"name\":{},\"subscribers\":{n}}}", json_string(name)))
        .collect();
    format!("{{\"topics\":[{}]}}\n", items.join(","))
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Starts the pub/sub server on `addr` (over TLS if `tls`), with `hub`.
pub fn spawn(addr: &str, config: Config, tls: Option<Arc<ServerConfig>>, http: HttpFlags, hub: Hub) -> Result<Running> {
    let mut listener = Listener::bind_with_config(addr, config)?;
    if let Some(tls) = tls {
        listener = listener.tls(tls);
    }
    let h = hub.clone();
    let routes = Routes::new(&http)?.page(move || Box::new(TopicList(h.clone())));
    listener.spawn(move |server| {
        routes.install(server);
        server.set_callback_ws(Box::new(Member { hub: hub.clone(), topic: String::new() }));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_from_paths() {
        assert_eq!(topic_of("/news").as_deref(), Some("news"));
        assert_eq!(topic_of("/a%20b/c?x=1").as_deref(), Some("a b/c"));
        assert_eq!(topic_of("/"), None);
        assert_eq!(topic_of("/?q"), None);
        assert_eq!(topic_of("/%ff"), None);
    }

    #[test]
    fn the_topic_list_is_json() {
        let hub = Hub::new();
        assert_eq!(topics_json(&hub), "{\"topics\":[]}\n");
        assert_eq!(json_string("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
    }
}
