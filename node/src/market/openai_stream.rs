//! A streamed OpenAI-compatible answer (`"stream": true`, server-sent events) read piece by
//! piece: the text is gathered as it comes, each piece counts as progress for the host's
//! heartbeats, and the `usage` of the last chunk (asked for with
//! `stream_options.include_usage`) gives the tokens.
//!
//! Everything is bounded: the text by the executor's output limit, and a line (one event)
//! by the same limit plus room for its JSON envelope, so a backend that never sends a
//! newline cannot grow memory. A stream that ends before `data: [DONE]` is an error: the
//! answer broke off, and a partial answer is never passed off as a whole one.

use serde_json::Value;

use super::executor::ExecError;

/// Room for one event's JSON envelope around its piece of text.
const EVENT_OVERHEAD: usize = 64 * 1024;

/// Which field of a chunk carries its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pieces {
    /// `choices[0].delta.content` (chat completions).
    Delta,
    /// `choices[0].text` (completions).
    Text,
}

/// Gathers a streamed answer from the bytes of its body.
#[derive(Debug)]
pub struct StreamReader {
    pieces: Pieces,
    max: usize,
    line: Vec<u8>,
    text: String,
    tokens: Option<u64>,
    done: bool,
}

impl StreamReader {
    /// A reader for `pieces`, refusing more than `max` bytes of text.
    pub fn new(pieces: Pieces, max: usize) -> Self {
        StreamReader {
            pieces,
            max,
            line: Vec::new(),
            text: String::new(),
            tokens: None,
            done: false,
        }
    }

    /// Feeds bytes of the body; returns how many pieces of text they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<u64, ExecError> {
        let mut pieces = 0;
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= self.max.saturating_add(EVENT_OVERHEAD) {
                    return Err(ExecError::OutputTooLarge { limit: self.max });
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            pieces += self.event(&line)?;
        }
        Ok(pieces)
    }

    fn event(&mut self, line: &[u8]) -> Result<u64, ExecError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Comments, event names, ids and blank separators carry no data.
        let Some(data) = line.strip_prefix(b"data:") else {
            return Ok(0);
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if self.done {
            return Ok(0);
        }
        if data == b"[DONE]" {
            self.done = true;
            return Ok(0);
        }
        let v: Value = serde_json::from_slice(data)
            .map_err(|_| ExecError::Http("backend stream event is not JSON".into()))?;
        if let Some(msg) = v.pointer("/error/message").and_then(Value::as_str) {
            let msg: String = msg.chars().take(200).collect();
            return Err(ExecError::Http(format!("backend stream failed: {msg}")));
        }
        if let Some(t) = v.pointer("/usage/total_tokens").and_then(Value::as_u64) {
            self.tokens = Some(t);
        }
        let piece = match self.pieces {
            Pieces::Delta => v.pointer("/choices/0/delta/content"),
            Pieces::Text => v.pointer("/choices/0/text"),
        }
        .and_then(Value::as_str)
        .unwrap_or("");
        if piece.is_empty() {
            return Ok(0);
        }
        if self.text.len() + piece.len() > self.max {
            return Err(ExecError::OutputTooLarge { limit: self.max });
        }
        self.text.push_str(piece);
        Ok(1)
    }

    /// The whole answer and its tokens, once the body has ended.
    pub fn finish(mut self) -> Result<(String, Option<u64>), ExecError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.event(&line)?;
        }
        if !self.done {
            return Err(ExecError::Http(
                "the answer broke off: the stream ended before [DONE]".into(),
            ));
        }
        Ok((self.text, self.tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(piece: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{piece:?}}}}}]}}\n\n")
    }

    #[test]
    fn a_stream_is_gathered_piece_by_piece_with_its_usage() {
        let mut r = StreamReader::new(Pieces::Delta, 1024);
        let body = format!(
            ": keep-alive\n\n{}{}data: {{\"choices\":[{{\"delta\":{{}}}}],\"usage\":{{\"total_tokens\":5}}}}\n\ndata: [DONE]\n\n",
            chunk("echo:"),
            chunk(" hi")
        );
        // Split anywhere: events may straddle the body's chunks.
        let (a, b) = body.as_bytes().split_at(17);
        let n = r.feed(a).unwrap() + r.feed(b).unwrap();
        assert_eq!(n, 2);
        assert_eq!(r.finish().unwrap(), ("echo: hi".into(), Some(5)));
        // Completions carry their pieces in `text`, and CRLF line ends are fine.
        let mut r = StreamReader::new(Pieces::Text, 1024);
        r.feed(b"data: {\"choices\":[{\"text\":\"ok\"}]}\r\n\r\ndata: [DONE]\r\n")
            .unwrap();
        assert_eq!(r.finish().unwrap(), ("ok".into(), None));
    }

    #[test]
    fn a_stream_that_stops_mid_way_is_an_error_not_a_short_answer() {
        let mut r = StreamReader::new(Pieces::Delta, 1024);
        r.feed(chunk("half").as_bytes()).unwrap();
        let err = r.finish().unwrap_err();
        assert!(err.to_string().contains("broke off"), "{err}");
    }

    #[test]
    fn hostile_streams_are_bounded_and_named() {
        // More text than the output limit.
        let mut r = StreamReader::new(Pieces::Delta, 8);
        r.feed(chunk("12345").as_bytes()).unwrap();
        assert_eq!(
            r.feed(chunk("67890").as_bytes()).unwrap_err(),
            ExecError::OutputTooLarge { limit: 8 }
        );
        // A line that never ends.
        let mut r = StreamReader::new(Pieces::Delta, 8);
        let endless = vec![b'x'; EVENT_OVERHEAD + 9];
        assert_eq!(
            r.feed(&endless).unwrap_err(),
            ExecError::OutputTooLarge { limit: 8 }
        );
        // Not JSON, and an error event.
        let mut r = StreamReader::new(Pieces::Delta, 64);
        assert!(r.feed(b"data: {oops\n").is_err());
        let mut r = StreamReader::new(Pieces::Delta, 64);
        let err = r
            .feed(b"data: {\"error\":{\"message\":\"model overloaded\"}}\n")
            .unwrap_err();
        assert!(err.to_string().contains("model overloaded"), "{err}");
        // Anything after [DONE] is ignored.
        let mut r = StreamReader::new(Pieces::Delta, 64);
        r.feed(b"data: [DONE]\n").unwrap();
        assert_eq!(r.feed(chunk("late").as_bytes()).unwrap(), 0);
        assert_eq!(r.finish().unwrap(), (String::new(), None));
    }
}
