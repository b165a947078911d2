//! HTTP and WebSocket on one port: `GET /` returns a page whose script opens a
//! WebSocket to `/ws` on the same port, which echoes.
//!
//! ```sh
//! cargo run --example http_and_ws -- 127.0.0.1:8080   # then open http://127.0.0.1:8080/
//! ```

use syncws::{HttpTrait, Listener, OwnedMessage, Request, Response, Result, Sender, WsHandshake, WsOption, WsTrait};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>syncws echo</title>
<h1>syncws echo</h1>
<form id="f"><input id="m" autocomplete="off" value="hello"><button>send</button></form>
<pre id="log"></pre>
<script>
const log = (s) => document.getElementById('log').textContent += s + '\n';
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => log('open');
ws.onmessage = (e) => log('< ' + e.data);
ws.onclose = (e) => log('closed ' + e.code);
document.getElementById('f').onsubmit = (e) => {
  e.preventDefault();
  const m = document.getElementById('m').value;
  ws.send(m);
  log('> ' + m);
};
</script>
"#;

struct Pages;

impl HttpTrait for Pages {
    fn operate(&mut self, req: &mut Request) -> Result<Response> {
        Ok(match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::new(200).with_body(PAGE.as_bytes().to_vec(), "text/html; charset=utf-8"),
            _ => Response::text(404, "not found"),
        })
    }
}

struct Echo(Option<Sender>);

impl WsTrait for Echo {
    fn on_request(&mut self, req: &Request) -> Result<Response> {
        if req.path != "/ws" {
            return Ok(Response::text(404, "the WebSocket is at /ws"));
        }
        syncws::WsHandshake::build_request(req)
    }

    fn on_open(&mut self, shake: WsHandshake) -> Result<Option<WsOption>> {
        self.0 = Some(shake.sender);
        Ok(None)
    }

    fn on_message(&mut self, msg: OwnedMessage) -> Result<()> {
        match &self.0 {
            Some(s) => s.send(msg),
            None => Ok(()),
        }
    }
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = Listener::bind(addr.as_str())?;
    println!("open http://{}/", listener.local_addr());
    listener.serve(|server| {
        server.set_callback_http(Box::new(Pages));
        server.set_callback_ws(Box::new(Echo(None)));
    })
}
