//! `Sec-WebSocket-Extensions` (RFC 6455 §9.1): the one extension syncws
//! speaks, permessage-deflate (RFC 7692 §5, §7.1), negotiated on both
//! sides without I/O (feature `deflate`).
//!
//! - A server takes the first permessage-deflate offer whose parameters
//!   are all known, valid and given once; an offer that breaks any rule is
//!   declined, and the next one considered (no acceptable offer: the
//!   connection goes on uncompressed). The answer never carries a
//!   parameter RFC 7692 forbids a server to send: `client_max_window_bits`
//!   only if the offer had it, `server_max_window_bits` never above what
//!   the offer asked for, and always with a value.
//! - A client offers the extension, always with `client_max_window_bits`
//!   (some servers accept only offers that have it), and checks the
//!   answer: one extension at most, permessage-deflate, every parameter
//!   valid, once, and within what was offered; anything else fails the
//!   handshake.
//!
//! Without the feature, nothing is offered or answered, and a server's
//! answer naming any extension fails the client's handshake.

#[cfg(feature = "deflate")]
use super::http::{Headers, Response};
#[cfg(feature = "deflate")]
use crate::config::DeflateConfig;
#[cfg(feature = "deflate")]
use crate::protocol::DeflateParams;

/// What the handshake settled beyond the subprotocol: the extensions the
/// connection speaks. Empty without the `deflate` feature.
#[derive(Debug, Clone, Default)]
pub(crate) struct Negotiated {
    /// permessage-deflate's parameters, and our settings (threshold,
    /// level).
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<(DeflateParams, DeflateConfig)>,
}

/// The extension's registered name.
#[cfg(feature = "deflate")]
const NAME: &str = "permessage-deflate";

/// One element of an extension list: its name and parameters, values
/// unquoted.
#[cfg(feature = "deflate")]
#[derive(Debug, PartialEq)]
struct Element {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// Splits `s` at each `sep` outside a quoted string.
#[cfg(feature = "deflate")]
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// An HTTP token (RFC 7230 §3.2.6).
#[cfg(feature = "deflate")]
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A parameter value: a token, or a quoted string whose content, once
/// unescaped, is a token (RFC 6455 §9.1). `None` if it is neither.
#[cfg(feature = "deflate")]
fn param_value(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let value = match raw.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?),
                    '"' => return None,
                    c => out.push(c),
                }
            }
            out
        }
        None => raw.to_owned(),
    };
    is_token(&value).then_some(value)
}

/// The elements of every `Sec-WebSocket-Extensions` header, in order.
/// An element that does not parse (an empty or invalid name, a parameter
/// that is not `token[=value]`) comes back as `None` in its place.
#[cfg(feature = "deflate")]
fn elements(headers: &Headers) -> Vec<Option<Element>> {
    let mut out = Vec::new();
    for value in headers.get_all("sec-websocket-extensions") {
        for item in split_outside_quotes(value, b',') {
            if item.trim().is_empty() {
                // Empty list elements are allowed by the `#rule`.
                continue;
            }
            out.push(element(item));
        }
    }
    out
}

#[cfg(feature = "deflate")]
fn element(item: &str) -> Option<Element> {
    let mut parts = split_outside_quotes(item, b';').into_iter();
    let name = parts.next()?.trim();
    if !is_token(name) {
        return None;
    }
    let mut params = Vec::new();
    for p in parts {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(param_value(v)?)),
            None => (p.trim(), None),
        };
        if !is_token(key) {
            return None;
        }
        params.push((key.to_ascii_lowercase(), value));
    }
    Some(Element { name: name.to_ascii_lowercase(), params })
}

/// A window size value: a decimal integer from 8 to 15 without leading
/// zeros (RFC 7692 §7.1.2.1).
#[cfg(feature = "deflate")]
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
        _ => None,
    }
}

/// The parameters of one permessage-deflate element, each at most once.
#[cfg(feature = "deflate")]
#[derive(Debug, Default, PartialEq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: given without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Reads a permessage-deflate element's parameters; `Err` says which
/// rule an unknown, repeated or invalid one broke.
#[cfg(feature = "deflate")]
fn params(e: &Element) -> Result<Params, String> {
    let mut p = Params::default();
    for (key, value) in &e.params {
        let dup = || format!("{key} is given twice");
        let bad = || format!("{key} has an invalid value {value:?}");
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) if !p.server_no_context_takeover => {
                p.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !p.client_no_context_takeover => {
                p.client_no_context_takeover = true;
            }
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => return Err(bad()),
            ("server_no_context_takeover" | "client_no_context_takeover", None) => return Err(dup()),
            ("server_max_window_bits", _) if p.server_max_window_bits.is_some() => return Err(dup()),
            ("server_max_window_bits", v) => {
                p.server_max_window_bits = Some(v.as_deref().and_then(window_bits).ok_or_else(bad)?);
            }
            ("client_max_window_bits", _) if p.client_max_window_bits.is_some() => return Err(dup()),
            ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                p.client_max_window_bits = Some(Some(window_bits(v).ok_or_else(bad)?));
            }
            _ => return Err(format!("unknown parameter {key}")),
        }
    }
    Ok(p)
}

/// The server's side: the answer to the first acceptable
/// permessage-deflate offer of `request_headers`, as a
/// `Sec-WebSocket-Extensions` value, with the parameters it settles; `None`
/// when no offer is acceptable (or none was made).
#[cfg(feature = "deflate")]
pub(crate) fn answer(request_headers: &Headers, config: &DeflateConfig) -> Option<(String, DeflateParams)> {
    for e in elements(request_headers).into_iter().flatten() {
        if e.name != NAME {
            continue;
        }
        let offer = match params(&e) {
            Ok(offer) => offer,
            Err(why) => {
                log::debug!("permessage-deflate offer declined: {why}");
                continue;
            }
        };
        return Some(answer_offer(&offer, config));
    }
    None
}

#[cfg(feature = "deflate")]
fn answer_offer(offer: &Params, config: &DeflateConfig) -> (String, DeflateParams) {
    let mut value = String::from(NAME);
    // A client that asks for it must get it (§7.1.1.1); we may add it.
    let server_nct = offer.server_no_context_takeover || config.server_no_context_takeover;
    if server_nct {
        value.push_str("; server_no_context_takeover");
    }
    // Echoed when offered, so that the client's promise binds it.
    let client_nct = offer.client_no_context_takeover || config.client_no_context_takeover;
    if client_nct {
        value.push_str("; client_no_context_takeover");
    }
    // At most what the client asked for (§7.1.2.1); announced unasked
    // only when we limit ourselves.
    let server_bits = match (offer.server_max_window_bits, config.server_max_window_bits) {
        (Some(asked), ours) => Some(asked.min(ours.unwrap_or(15))),
        (None, ours) => ours,
    };
    if let Some(bits) = server_bits {
        value.push_str(&format!("; server_max_window_bits={bits}"));
    }
    // Only if offered (§7.1.2.2), never above an offered value.
    let client_bits = match (offer.client_max_window_bits, config.client_max_window_bits) {
        (Some(offered), Some(ours)) => Some(offered.map_or(ours, |v| v.min(ours))),
        _ => None,
    };
    if let Some(bits) = client_bits {
        value.push_str(&format!("; client_max_window_bits={bits}"));
    }
    let params = DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits.unwrap_or(15),
        client_max_window_bits: client_bits.or(offer.client_max_window_bits.flatten()).unwrap_or(15),
    };
    (value, params)
}

/// The server's side, on a 101 about to be written: adds the extension's
/// answer if `config` enables it and the request offered it acceptably,
/// and returns what was negotiated.
pub(crate) fn negotiate_server(
    request: &super::Request,
    response: &mut super::Response,
    config: &crate::Config,
) -> Negotiated {
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &config.deflate {
        if response.status == 101 {
            if let Some((value, params)) = answer(&request.headers, deflate) {
                response.headers.insert("Sec-WebSocket-Extensions", value);
                return Negotiated { deflate: Some((params, deflate.clone())) };
            }
        }
    }
    let _ = (request, response, config);
    Negotiated::default()
}

/// The client's side: the `Sec-WebSocket-Extensions` value to offer.
///
/// The offer asks for what `config` says; when that includes
/// `server_no_context_takeover`, a second offer without it follows, so a
/// server that will not reset its context can still compress.
#[cfg(feature = "deflate")]
pub(crate) fn offer(config: &DeflateConfig) -> String {
    let tail = |with_server_nct: bool| {
        let mut v = String::from(NAME);
        if with_server_nct {
            v.push_str("; server_no_context_takeover");
        }
        if config.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = config.server_max_window_bits {
            v.push_str(&format!("; server_max_window_bits={bits}"));
        }
        match config.client_max_window_bits {
            Some(bits) => v.push_str(&format!("; client_max_window_bits={bits}")),
            None => v.push_str("; client_max_window_bits"),
        }
        v
    };
    if config.server_no_context_takeover {
        format!("{}, {}", tail(true), tail(false))
    } else {
        tail(false)
    }
}

/// The client's side: checks the server's `Sec-WebSocket-Extensions`
/// answer to [`offer`]`(config)` and returns what it settled (`None`: the
/// server declined, no compression), or a sentence saying what is wrong.
#[cfg(feature = "deflate")]
pub(crate) fn check_answer(resp: &Response, config: &DeflateConfig) -> Result<Option<DeflateParams>, String> {
    let elements = elements(&resp.headers);
    let e = match elements.as_slice() {
        [] => return Ok(None),
        [Some(e)] => e,
        [None] => return Err("its Sec-WebSocket-Extensions does not parse".into()),
        _ => return Err("it negotiates several extensions, only permessage-deflate was offered".into()),
    };
    if e.name != NAME {
        return Err(format!("it negotiates extension {:?}, which was not offered", e.name));
    }
    let p = params(e).map_err(|why| format!("its permessage-deflate answer is invalid: {why}"))?;
    let client_bits = match p.client_max_window_bits {
        None => None,
        Some(None) => return Err("its client_max_window_bits has no value".into()),
        Some(Some(bits)) => match config.client_max_window_bits {
            Some(offered) if bits > offered => {
                return Err(format!("its client_max_window_bits={bits} is above the {offered} offered"));
            }
            _ => Some(bits),
        },
    };
    if let Some(asked) = config.server_max_window_bits {
        match p.server_max_window_bits {
            None => return Err(format!("it ignores the server_max_window_bits={asked} asked for")),
            Some(bits) if bits > asked => {
                return Err(format!("its server_max_window_bits={bits} is above the {asked} asked for"));
            }
            Some(_) => {}
        }
    }
    Ok(Some(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        // We offered it: a promise, whatever the answer says.
        client_no_context_takeover: p.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits: p.server_max_window_bits.unwrap_or(15),
        client_max_window_bits: client_bits.or(config.client_max_window_bits).unwrap_or(15),
    }))
}

#[cfg(all(test, feature = "deflate"))]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Headers {
        let mut h = Headers::new();
        for v in values {
            h.append("Sec-WebSocket-Extensions", *v);
        }
        h
    }

    /// The server's answer to `offers` with `config`: the header value.
    fn answered(offers: &[&str], config: &DeflateConfig) -> Option<String> {
        answer(&headers(offers), config).map(|(v, _)| v)
    }

    /// Settings that add nothing unasked, to see the answer to the offer
    /// alone.
    fn plain() -> DeflateConfig {
        DeflateConfig::default().server_no_context_takeover(false).client_no_context_takeover(false)
    }

    #[test]
    fn list_syntax() {
        let h = headers(&["foo, permessage-deflate; client_max_window_bits", "x; a=\"b\\\"c\""]);
        let e = elements(&h);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].as_ref().unwrap().name, "foo");
        let pmd = e[1].as_ref().unwrap();
        assert_eq!(pmd.params, [("client_max_window_bits".to_owned(), None)]);
        // A quoted value must be a token once unescaped: `b"c` is not.
        assert!(e[2].is_none());
        // Quoted commas do not split; empty elements are skipped.
        let e = elements(&headers(&[", permessage-deflate; server_max_window_bits=\"10\" ,,"]));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].as_ref().unwrap().params[0].1.as_deref(), Some("10"));
        assert!(element("; x").is_none());
        assert!(element("a b").is_none());
        assert!(element("x; =3").is_none());
    }

    #[test]
    fn window_bits_values() {
        for ok in 8..=15u8 {
            assert_eq!(window_bits(&ok.to_string()), Some(ok));
        }
        for bad in ["7", "16", "08", "010", "", " 9", "9 ", "+9", "0x9", "9.0", "-8"] {
            assert_eq!(window_bits(bad), None, "{bad:?}");
        }
    }

    /// Each offer, and the server's answer with settings that add nothing
    /// (`None`: declined, the connection goes on uncompressed).
    #[test]
    fn server_answers_each_offer() {
        let cases: &[(&str, Option<&str>)] = &[
            ("permessage-deflate", Some("permessage-deflate")),
            ("Permessage-Deflate", Some("permessage-deflate")),
            ("permessage-deflate; server_no_context_takeover", Some("permessage-deflate; server_no_context_takeover")),
            ("permessage-deflate; client_no_context_takeover", Some("permessage-deflate; client_no_context_takeover")),
            ("permessage-deflate; server_max_window_bits=10", Some("permessage-deflate; server_max_window_bits=10")),
            ("permessage-deflate; server_max_window_bits=\"8\"", Some("permessage-deflate; server_max_window_bits=8")),
            // A bare client_max_window_bits: nothing to answer unless we limit the client.
            ("permessage-deflate; client_max_window_bits", Some("permessage-deflate")),
            ("permessage-deflate; client_max_window_bits=9", Some("permessage-deflate")),
            // Invalid or duplicate parameters decline the offer.
            ("permessage-deflate; server_max_window_bits", None),
            ("permessage-deflate; server_max_window_bits=7", None),
            ("permessage-deflate; server_max_window_bits=16", None),
            ("permessage-deflate; server_max_window_bits=08", None),
            ("permessage-deflate; client_max_window_bits=0", None),
            ("permessage-deflate; server_no_context_takeover=1", None),
            ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
            ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
            ("permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", None),
            ("permessage-deflate; client_max_window_bits; client_max_window_bits=10", None),
            ("permessage-deflate; mystery", None),
            ("permessage-deflate; x=1", None),
            ("x-webkit-deflate-frame", None),
            ("", None),
        ];
        for (offer, want) in cases {
            assert_eq!(answered(&[offer], &plain()).as_deref(), *want, "{offer:?}");
        }
    }

    /// The server takes at most one offer: the first acceptable one.
    #[test]
    fn server_takes_the_first_acceptable_offer() {
        let offers = [
            "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=12",
            "permessage-deflate; client_no_context_takeover",
        ];
        let v = answered(&offers, &plain()).unwrap();
        assert_eq!(v, "permessage-deflate; server_max_window_bits=12");
        assert_eq!(v.matches("permessage-deflate").count(), 1);
        // Autobahn 13.7's list: the first acceptable one wins.
        let autobahn = ["permessage-deflate; client_no_context_takeover; server_max_window_bits=8; \
             client_max_window_bits, permessage-deflate; client_no_context_takeover; client_max_window_bits, \
             permessage-deflate; client_max_window_bits"];
        let (v, p) = answer(&headers(&autobahn), &plain()).unwrap();
        assert_eq!(v, "permessage-deflate; client_no_context_takeover; server_max_window_bits=8");
        assert_eq!(p.server_max_window_bits, 8);
    }

    /// What the server may add of its own, and what it must never send.
    #[test]
    fn server_settings_and_forbidden_parameters() {
        let ours = DeflateConfig::default().server_max_window_bits(Some(11)).client_max_window_bits(Some(10));
        // Unasked: both no_context_takeover and our window; no
        // client_max_window_bits since the client did not offer it.
        let (v, p) = answer(&headers(&["permessage-deflate"]), &ours).unwrap();
        assert_eq!(
            v,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11"
        );
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (11, 15));
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        // The client asks for less than ours: its value. Offered bare: ours.
        let (v, p) =
            answer(&headers(&["permessage-deflate; server_max_window_bits=9; client_max_window_bits"]), &ours).unwrap();
        assert!(v.ends_with("; server_max_window_bits=9; client_max_window_bits=10"), "{v}");
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (9, 10));
        // Offered with a value below ours: never above it.
        let v = answered(&["permessage-deflate; client_max_window_bits=9"], &ours).unwrap();
        assert!(v.ends_with("; client_max_window_bits=9"), "{v}");
        // Asked for a window of 8: accepted; the server will send uncompressed.
        let (_, p) = answer(&headers(&["permessage-deflate; server_max_window_bits=8"]), &plain()).unwrap();
        assert_eq!(p.server_max_window_bits, 8);
        // A client that offers client_no_context_takeover is held to it.
        let (_, p) = answer(&headers(&["permessage-deflate; client_no_context_takeover"]), &plain()).unwrap();
        assert!(p.client_no_context_takeover);
    }

    #[test]
    fn client_offers() {
        assert_eq!(
            offer(&DeflateConfig::default()),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits"
        );
        assert_eq!(offer(&plain()), "permessage-deflate; client_max_window_bits");
        let limited = plain().server_max_window_bits(Some(10)).client_max_window_bits(Some(12));
        assert_eq!(offer(&limited), "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");
        // Every offer we make is one our own server accepts.
        for config in [DeflateConfig::default(), plain(), limited] {
            assert!(answer(&headers(&[&offer(&config)]), &config).is_some());
        }
    }

    fn response(values: &[&str]) -> Response {
        let mut r = Response::new(101);
        r.headers = headers(values);
        r
    }

    #[test]
    fn client_checks_the_answer() {
        let ok = |values: &[&str], config: &DeflateConfig| check_answer(&response(values), config).unwrap();
        assert_eq!(ok(&[], &plain()), None);
        let p = ok(&["permessage-deflate"], &plain()).unwrap();
        assert_eq!(p, DeflateParams::default());
        let p = ok(&["permessage-deflate; server_no_context_takeover; client_max_window_bits=8"], &plain()).unwrap();
        assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
        assert_eq!(p.client_max_window_bits, 8, "the client then sends uncompressed");
        // Offered client_no_context_takeover: we reset whatever the answer says.
        assert!(ok(&["permessage-deflate"], &DeflateConfig::default()).unwrap().client_no_context_takeover);
        let bad: &[(&[&str], DeflateConfig, &str)] = &[
            (&["x-other"], plain(), "not offered"),
            (&["permessage-deflate, permessage-deflate"], plain(), "several"),
            (&["permessage-deflate", "permessage-deflate"], plain(), "several"),
            (&["permessage-deflate; nope"], plain(), "unknown parameter"),
            (&["permessage-deflate; client_max_window_bits"], plain(), "no value"),
            (&["permessage-deflate; server_max_window_bits=16"], plain(), "invalid value"),
            (&["permessage-deflate; server_max_window_bits"], plain(), "invalid value"),
            (&["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], plain(), "twice"),
            (&["permessage-deflate; client_max_window_bits=12"], plain().client_max_window_bits(Some(10)), "above"),
            (&["permessage-deflate"], plain().server_max_window_bits(Some(10)), "ignores"),
            (&["permessage-deflate; server_max_window_bits=12"], plain().server_max_window_bits(Some(10)), "above"),
            (&["permessage-deflate; a=\"\""], plain(), "does not parse"),
        ];
        for (values, config, says) in bad {
            let err = check_answer(&response(values), config).unwrap_err();
            assert!(err.contains(says), "{values:?}: {err}");
        }
    }
}
