//! Cheap classification of server -> client WebSocket frames.
//!
//! Every message is one JSON object (several messages may arrive per TCP read,
//! tungstenite splits them). Event frames are on the hot path, so instead of a
//! full JSON parse we locate the `"op"` key and, for events, the bench's send
//! timestamp `event.data.t` with byte searches. Replies (once per connection)
//! are parsed properly with serde_json.

/// What a server frame is, as far as the benchmark cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `{"op":"event",...}`; `t` is `event.data.t` (unix nanos) if present.
    Event { t: Option<u64> },
    /// `{"op":"reply","id":..,"ok":..}`; `error` is the error object's text.
    Reply {
        id: Option<u64>,
        ok: bool,
        error: Option<String>,
    },
    /// `{"op":"lagged",...}`: the server shed events for this connection.
    Lagged,
    /// `{"op":"disconnect",...}`: the server is closing this connection
    /// (Socket.IO: Engine.IO close `1`, namespace disconnect `41`).
    Disconnect,
    /// A protocol-level heartbeat the client must answer (Socket.IO `2`);
    /// see [`System::pong`](crate::protocol::System::pong).
    Ping,
    /// Anything else (pong, unknown ops, malformed JSON).
    Other,
}

/// Position of the first occurrence of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let off = hay[i..=hay.len() - needle.len()].iter().position(|&b| b == first)?;
        i += off;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Offset just past `"key"` + optional whitespace + `:` + optional whitespace,
/// searching from `from`. `quoted_key` includes the quotes.
fn value_after(b: &[u8], quoted_key: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let k = find(b, quoted_key, at)?;
        let i = skip_ws(b, k + quoted_key.len());
        if b.get(i) == Some(&b':') {
            return Some(skip_ws(b, i + 1));
        }
        at = k + 1;
    }
}

/// The string value of `"op"`, without quotes.
fn op(b: &[u8]) -> Option<&[u8]> {
    let start = value_after(b, b"\"op\"", 0)?;
    if b.get(start) != Some(&b'"') {
        return None;
    }
    let len = b[start + 1..].iter().position(|&c| c == b'"')?;
    Some(&b[start + 1..start + 1 + len])
}

/// Parses the unsigned integer at the start of `b` (no sign, no fraction).
fn leading_u64(b: &[u8]) -> Option<u64> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &b[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// `event.data.t`: the first `"t":` key after the first `"data":` key (also
/// used for the peers' frames, which carry the published body).
pub fn event_t(b: &[u8]) -> Option<u64> {
    let data = value_after(b, b"\"data\"", 0)?;
    let t = value_after(b, b"\"t\"", data)?;
    leading_u64(&b[t..])
}

fn reply(b: &[u8]) -> Frame {
    match serde_json::from_slice::<serde_json::Value>(b) {
        Ok(v) => Frame::Reply {
            id: v.get("id").and_then(serde_json::Value::as_u64),
            ok: v.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false),
            error: v.get("error").map(ToString::to_string),
        },
        Err(_) => Frame::Other,
    }
}

/// Classifies one WebSocket message payload.
pub fn classify(b: &[u8]) -> Frame {
    match op(b) {
        Some(b"event") => Frame::Event { t: event_t(b) },
        Some(b"reply") => reply(b),
        Some(b"lagged") => Frame::Lagged,
        Some(b"disconnect") => Frame::Disconnect,
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_with_timestamp() {
        let f = br#"{"op":"event","topic":"bench","offset":7,"epoch":"e1","event":{"id":"x","type":"bench.tick","time":"2025-01-01T00:00:00Z","priority":"normal","source":"s","data":{"t":1700000000123456789,"pad":"xxxx"},"requiresAck":false}}"#;
        assert_eq!(
            classify(f),
            Frame::Event {
                t: Some(1_700_000_000_123_456_789)
            }
        );
    }

    #[test]
    fn tolerates_whitespace_and_key_order() {
        let f = br#"{ "event" : { "data" : { "pad":"x", "t" : 42 } }, "op" : "event" }"#;
        assert_eq!(classify(f), Frame::Event { t: Some(42) });
        let f = br#"{"op":"event","event":{"data":{"x":1}}}"#;
        assert_eq!(classify(f), Frame::Event { t: None });
        // A "t" key outside "data" is not the timestamp.
        let f = br#"{"op":"event","t":5,"event":{"data":{"u":1}}}"#;
        assert_eq!(classify(f), Frame::Event { t: None });
    }

    #[test]
    fn other_ops() {
        assert_eq!(
            classify(br#"{"op":"lagged","topic":"b","from":1,"to":9}"#),
            Frame::Lagged
        );
        assert_eq!(
            classify(br#"{"op":"disconnect","code":4003,"reason":"x","reconnect":true}"#),
            Frame::Disconnect
        );
        assert_eq!(classify(br#"{"op":"pong","id":5}"#), Frame::Other);
        assert_eq!(classify(b"not json"), Frame::Other);
        assert_eq!(classify(br#"{"type":"op","x":"event"}"#), Frame::Other);
        assert_eq!(classify(b""), Frame::Other);
    }

    #[test]
    fn replies() {
        assert_eq!(
            classify(br#"{"op":"reply","id":1,"ok":true,"result":{"offset":0,"epoch":"e1","recovered":true}}"#),
            Frame::Reply {
                id: Some(1),
                ok: true,
                error: None
            }
        );
        let f = classify(br#"{"op":"reply","id":1,"ok":false,"error":{"code":"forbidden","message":"no"}}"#);
        assert!(matches!(f, Frame::Reply { id: Some(1), ok: false, error: Some(ref e) } if e.contains("forbidden")));
    }

    #[test]
    fn truncated_and_mangled_input_never_panics() {
        let f: &[u8] = br#"{"op":"event","event":{"data":{"t":123,"pad":"x"}},"x":"\"op\" : "}"#;
        for end in 0..=f.len() {
            let _ = classify(&f[..end]);
            let _ = classify(&f[end..]);
        }
        for b in [
            &b"\"op\""[..],
            b"\"op\":",
            b"\"op\":\"",
            b"\"data\":{\"t\":",
            b"\"t\"\"t\":",
        ] {
            let _ = classify(b);
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(leading_u64(b"123,"), Some(123));
        assert_eq!(leading_u64(b"-1"), None);
        assert_eq!(leading_u64(b"99999999999999999999"), None);
    }
}
