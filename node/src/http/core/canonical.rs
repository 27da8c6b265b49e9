//! Canonical JSON exactly as Python prints it with
//! `json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
//!
//! Core signs that form of the job body without its `signature` field. We parse the raw
//! body ourselves so that numbers keep the exact text they were sent with (Python printed
//! them; re-formatting a float here could change a digit and break the HMAC). Rules:
//! - objects: keys sorted by code point (UTF-8 byte order is the same), at every level;
//!   duplicate keys are refused;
//! - strings: `"` and `\` escaped, control characters as `\b \t \n \f \r` or `\u00xx`,
//!   everything else (non-ASCII included) as raw UTF-8;
//! - numbers: the lexeme as sent; `true`, `false`, `null`; no whitespace.
//!
//! Nesting is bounded ([`MAX_DEPTH`]) so a hostile body cannot exhaust the stack.

use std::collections::BTreeMap;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed JSON value that remembers number lexemes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, as sent.
    Number(String),
    /// A string (decoded).
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object with sorted keys.
    Object(BTreeMap<String, Json>),
}

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at byte {at}: {what}")]
pub struct ParseError {
    /// Byte offset.
    pub at: usize,
    /// What is wrong.
    pub what: String,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            at: self.i,
            what: what.into(),
        })
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return self.err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        self.ws();
        match self.s.get(self.i) {
            None => self.err("unexpected end of input"),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(c) => self.err(format!("unexpected character {:?}", *c as char)),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, ParseError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err(format!("expected {word}"))
        }
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let d = p.i;
            while p.i < p.s.len() && p.s[p.i].is_ascii_digit() {
                p.i += 1;
            }
            p.i - d
        };
        if self.s[self.i] == b'-' {
            self.i += 1;
        }
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return self.err("invalid number");
        }
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return self.err("invalid number: digits expected after '.'");
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.err("invalid number: exponent digits expected");
            }
        }
        // The slice is ASCII by construction.
        Ok(Json::Number(
            String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
        ))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.s.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => self.i += 2,
                Some(c) if *c < 0x20 => return self.err("control character in string"),
                Some(_) => self.i += 1,
            }
        }
        self.i += 1;
        // serde_json decodes escapes (including surrogate pairs) and checks UTF-8.
        let raw = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ParseError {
            at: start,
            what: "invalid UTF-8".into(),
        })?;
        serde_json::from_str::<String>(raw).map_err(|e| ParseError {
            at: start,
            what: format!("invalid string: {e}"),
        })
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.i += 1;
        let mut v = Vec::new();
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Json::Array(v));
        }
        loop {
            v.push(self.value(depth + 1)?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(v));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.i += 1;
        let mut m = BTreeMap::new();
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Json::Object(m));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return self.err("expected a string key");
            }
            let key = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            let val = self.value(depth + 1)?;
            if m.insert(key.clone(), val).is_some() {
                return self.err(format!("duplicate key {key:?}"));
            }
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Object(m));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }
}

/// Parses a whole document.
pub fn parse(bytes: &[u8]) -> Result<Json, ParseError> {
    let mut p = Parser { s: bytes, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != bytes.len() {
        return p.err("trailing characters after the JSON document");
    }
    Ok(v)
}

impl Json {
    /// Appends the canonical form to `out`.
    pub fn write_canonical(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            // serde_json escapes exactly as Python's json.dumps(ensure_ascii=False) does.
            Json::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Array(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.write_canonical(out);
                }
                out.push(']');
            }
            Json::Object(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    x.write_canonical(out);
                }
                out.push('}');
            }
        }
    }

    /// The canonical form.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        self.write_canonical(&mut s);
        s
    }

    /// A top-level string field.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        match self {
            Json::Object(m) => match m.get(key) {
                Some(Json::String(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse(s.as_bytes()).unwrap().canonical()
    }

    #[test]
    fn matches_python_sort_keys_compact_ensure_ascii_false() {
        // Expected strings printed by CPython 3.11:
        // json.dumps(json.loads(x), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert_eq!(
            canon(
                r#"{"job_id": "job-123", "type": "compute", "size": 0.25, "timestamp": 1704278400, "payload": {"prompt": "Test", "b": [1, 2.5, {"z": null, "a": true}]}}"#
            ),
            r#"{"job_id":"job-123","payload":{"b":[1,2.5,{"a":true,"z":null}],"prompt":"Test"},"size":0.25,"timestamp":1704278400,"type":"compute"}"#
        );
        assert_eq!(
            canon(r#"{"s": "Grüße \"x\" \\ \n\t\u0001 €"}"#),
            "{\"s\":\"Grüße \\\"x\\\" \\\\ \\n\\t\\u0001 €\"}"
        );
        assert_eq!(canon(r#"{"e": "\ud83d\ude00"}"#), "{\"e\":\"😀\"}");
        // Keys sort by code point: "B" < "a" < "é".
        assert_eq!(canon(r#"{"é":1,"a":2,"B":3}"#), r#"{"B":3,"a":2,"é":1}"#);
        // Number lexemes are kept exactly.
        assert_eq!(
            canon(r#"[1e-05, 1e+16, -0.0, 12345678901234567890123]"#),
            "[1e-05,1e+16,-0.0,12345678901234567890123]"
        );
    }

    #[test]
    fn bad_documents_are_refused_with_a_position() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "[1] x",
            "\"\u{1}\"",
            "{\"a\":",
            "",
            "1.",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} should fail");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert!(parse(deep.as_bytes()).unwrap_err().what.contains("nesting"));
        let e = parse(br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
    }
}
