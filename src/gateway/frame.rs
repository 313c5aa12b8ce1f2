//! Wire frames of PROTOCOL.md section 2: parsing client requests without
//! copying `data`, and encoding server frames once, as shared bytes.
//!
//! A client's `data` is kept as the raw JSON text it sent (validated by the
//! parser) and spliced into the outgoing `message` or `direct` frame, so a
//! publish is parsed once and encoded once whatever the room's size.

use std::fmt::Write;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A client request, borrowed from the received text.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The raw JSON of `ref` (a string or an integer), echoed verbatim.
    pub reference: Option<&'a str>,
    /// What is asked.
    pub kind: Kind<'a>,
}

/// The request types.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// `join`
    Join {
        /// Room name (not yet validated).
        room: String,
    },
    /// `leave`
    Leave {
        /// Room name.
        room: String,
    },
    /// `publish`
    Publish {
        /// Room name.
        room: String,
        /// Raw JSON of `data`.
        data: &'a str,
    },
    /// `direct`
    Direct {
        /// Username.
        to: String,
        /// Raw JSON of `data`.
        data: &'a str,
    },
    /// `presence`
    Presence {
        /// Room name.
        room: String,
    },
    /// `ping`
    Ping,
}

/// Why a frame was refused; carries the `ref` when it could be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// The request's `ref`, if readable.
    pub reference: Option<&'a str>,
    /// `bad_frame` or `unknown_type`.
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "ref", borrow)]
    reference: Option<&'a RawValue>,
    #[serde(borrow)]
    room: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    /// `null` is a value here, not an absent field.
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn bad<'a>(reference: Option<&'a str>, message: impl Into<String>) -> Refusal<'a> {
    Refusal {
        reference,
        code: "bad_frame",
        message: message.into(),
    }
}

fn string_field<'a>(
    raw: Option<&'a RawValue>,
    name: &str,
    reference: Option<&'a str>,
) -> Result<String, Refusal<'a>> {
    let raw = raw.ok_or_else(|| bad(reference, format!("missing field {name:?}")))?;
    serde_json::from_str::<String>(raw.get())
        .map_err(|_| bad(reference, format!("field {name:?} must be a string")))
}

/// Parses one text frame. `max_data` bounds the encoded size of `data`.
///
/// # Errors
/// A [`Refusal`] naming `bad_frame` (not JSON, not an object, missing or
/// wrong-typed field, `data` too large) or `unknown_type`.
pub fn parse(text: &str, max_data: usize) -> Result<Request<'_>, Refusal<'_>> {
    let raw: Raw<'_> = serde_json::from_str(text)
        .map_err(|_| bad(None, "a frame must be one JSON object with a \"type\""))?;
    let reference = match raw.reference.map(RawValue::get) {
        None => None,
        Some(r) if is_ref(r) => Some(r),
        Some(_) => return Err(bad(None, "\"ref\" must be a string or an integer")),
    };
    let kind = string_field(raw.kind, "type", reference)?;
    let kind = match kind.as_str() {
        "join" => Kind::Join {
            room: string_field(raw.room, "room", reference)?,
        },
        "leave" => Kind::Leave {
            room: string_field(raw.room, "room", reference)?,
        },
        "presence" => Kind::Presence {
            room: string_field(raw.room, "room", reference)?,
        },
        "publish" => Kind::Publish {
            room: string_field(raw.room, "room", reference)?,
            data: data_field(raw.data, reference, max_data)?,
        },
        "direct" => Kind::Direct {
            to: string_field(raw.to, "to", reference)?,
            data: data_field(raw.data, reference, max_data)?,
        },
        "ping" => Kind::Ping,
        other => {
            return Err(Refusal {
                reference,
                code: "unknown_type",
                message: format!("unknown type {:?}", truncate(other, 32)),
            });
        }
    };
    Ok(Request { reference, kind })
}

fn data_field<'a>(
    raw: Option<&'a RawValue>,
    reference: Option<&'a str>,
    max_data: usize,
) -> Result<&'a str, Refusal<'a>> {
    let d = raw
        .map(RawValue::get)
        .ok_or_else(|| bad(reference, "missing field \"data\""))?;
    if d.len() > max_data {
        return Err(bad(
            reference,
            format!("\"data\" is larger than {max_data} bytes"),
        ));
    }
    Ok(d)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A `ref` is a JSON string or an integer.
fn is_ref(raw: &str) -> bool {
    if raw.starts_with('"') {
        return true; // RawValue already checked it is a valid JSON string
    }
    raw.parse::<i64>().is_ok() || raw.parse::<u64>().is_ok()
}

/// Builds a server frame as JSON text. Field values are written by the
/// caller through the typed helpers, so every frame is valid JSON.
pub struct FrameBuf(String);

impl FrameBuf {
    /// Starts `{"type":"<kind>"`.
    pub fn new(kind: &str) -> Self {
        let mut s = String::with_capacity(96);
        s.push_str("{\"type\":\"");
        s.push_str(kind);
        s.push('"');
        Self(s)
    }

    /// Adds a string field.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        let _ = write!(self.0, ",\"{key}\":");
        push_json_str(&mut self.0, value);
        self
    }

    /// Adds a string-or-null field.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Adds an integer field.
    pub fn int(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.0, ",\"{key}\":{value}");
        self
    }

    /// Adds a field whose value is already valid JSON text.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        let _ = write!(self.0, ",\"{key}\":{json}");
        self
    }

    /// Adds `ref` when present.
    pub fn reference(self, reference: Option<&str>) -> Self {
        match reference {
            Some(r) => self.raw("ref", r),
            None => self,
        }
    }

    /// Adds an array of strings.
    pub fn str_list<'s>(mut self, key: &str, values: impl IntoIterator<Item = &'s str>) -> Self {
        let _ = write!(self.0, ",\"{key}\":[");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            push_json_str(&mut self.0, v);
        }
        self.0.push(']');
        self
    }

    /// `{"id":ID,"username":"NAME"}`, for embedding with [`FrameBuf::raw`].
    pub fn user_object(id: i64, username: &str) -> String {
        let mut s = format!("{{\"id\":{id},\"username\":");
        push_json_str(&mut s, username);
        s.push('}');
        s
    }

    /// Closes the object into shareable bytes.
    pub fn finish(mut self) -> Utf8Bytes {
        self.0.push('}');
        Utf8Bytes::from(self.0)
    }
}

/// Appends `s` as a JSON string literal.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// An `error` frame.
pub fn error(reference: Option<&str>, code: &str, message: &str) -> Utf8Bytes {
    FrameBuf::new("error")
        .reference(reference)
        .str("code", code)
        .str("message", message)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 60 * 1024;

    #[test]
    fn parses_every_request() {
        let r = parse(r#"{"type":"join","room":"lobby","ref":1}"#, MAX).unwrap();
        assert_eq!(r.reference, Some("1"));
        assert_eq!(
            r.kind,
            Kind::Join {
                room: "lobby".into()
            }
        );
        let r = parse(
            r#"{"type":"publish","room":"a","data":{"x":[1,2]},"ref":"r-1"}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(r.reference, Some("\"r-1\""));
        assert_eq!(
            r.kind,
            Kind::Publish {
                room: "a".into(),
                data: r#"{"x":[1,2]}"#
            }
        );
        let r = parse(r#"{"type":"direct","to":"bob","data":"hi"}"#, MAX).unwrap();
        assert_eq!(
            r.kind,
            Kind::Direct {
                to: "bob".into(),
                data: "\"hi\""
            }
        );
        assert_eq!(parse(r#"{"type":"ping"}"#, MAX).unwrap().kind, Kind::Ping);
        assert!(matches!(
            parse(r#"{"type":"leave","room":"a"}"#, MAX).unwrap().kind,
            Kind::Leave { .. }
        ));
        assert!(matches!(
            parse(r#"{"type":"presence","room":"a"}"#, MAX)
                .unwrap()
                .kind,
            Kind::Presence { .. }
        ));
        // unknown fields are ignored; data may be null
        let r = parse(
            r#"{"type":"publish","room":"a","data":null,"extra":true}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(
            r.kind,
            Kind::Publish {
                room: "a".into(),
                data: "null"
            }
        );
    }

    #[test]
    fn refuses_bad_frames_with_ref_when_readable() {
        for (text, code, has_ref) in [
            ("not json", "bad_frame", false),
            ("[1,2]", "bad_frame", false),
            ("42", "bad_frame", false),
            (r#"{"ref":1}"#, "bad_frame", true),
            (r#"{"type":7,"ref":1}"#, "bad_frame", true),
            (r#"{"type":"join","ref":1}"#, "bad_frame", true),
            (r#"{"type":"join","room":5,"ref":1}"#, "bad_frame", true),
            (
                r#"{"type":"publish","room":"a","ref":1}"#,
                "bad_frame",
                true,
            ),
            (r#"{"type":"direct","data":1,"ref":1}"#, "bad_frame", true),
            (r#"{"type":"nope","ref":1}"#, "unknown_type", true),
            (r#"{"type":"ping","ref":1.5}"#, "bad_frame", false),
            (r#"{"type":"ping","ref":{}}"#, "bad_frame", false),
        ] {
            let e = parse(text, MAX).unwrap_err();
            assert_eq!(e.code, code, "{text}");
            assert_eq!(e.reference.is_some(), has_ref, "{text}");
        }
    }

    #[test]
    fn data_size_limit() {
        let big = format!(
            r#"{{"type":"publish","room":"a","data":"{}","ref":9}}"#,
            "x".repeat(100)
        );
        assert!(parse(&big, 102).is_ok());
        let e = parse(&big, 101).unwrap_err();
        assert_eq!((e.code, e.reference), ("bad_frame", Some("9")));
    }

    #[test]
    fn frames_are_valid_json() {
        let f = FrameBuf::new("message")
            .str("room", "r\"1\n")
            .opt_str("from", None)
            .raw("data", r#"{"a":1}"#)
            .int("seq", 5)
            .str("epoch", "e1")
            .str_list("users", ["a", "b\u{1}"])
            .reference(Some("\"x\""))
            .finish();
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["room"], "r\"1\n");
        assert_eq!(v["from"], serde_json::Value::Null);
        assert_eq!(v["data"]["a"], 1);
        assert_eq!(v["seq"], 5);
        assert_eq!(v["users"][1], "b\u{1}");
        assert_eq!(v["ref"], "x");
        let e: serde_json::Value =
            serde_json::from_str(&error(Some("3"), "bad_frame", "no")).unwrap();
        assert_eq!(
            (e["ref"].as_i64(), e["code"].as_str()),
            (Some(3), Some("bad_frame"))
        );
    }
}
