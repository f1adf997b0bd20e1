//! Server-sent events as `/run-stream` answers them: the event-stream format of the HTML
//! standard, read strictly. Lines end with LF, CRLF or CR; a blank line ends an event; a
//! line starting with `:` is a comment (a keep-alive); every other line is a field,
//! `name: value` (one space after the colon is dropped) or a bare `name`, and the fields
//! are `event`, `data`, `id` and `retry` only. The stream must end with a blank line, so
//! its last event is whole.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// Its `event` field (`message` when it has none).
    pub(crate) name: String,
    /// Its `data` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Parses a whole event stream; the error says what breaks the format and on which line.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<SseEvent>, String> {
    let text = std::str::from_utf8(body).map_err(|error| format!("not UTF-8: {error}"))?;
    let mut events = Vec::new();
    let mut name: Option<String> = None;
    let mut data: Option<String> = None;
    let mut pending = false;
    for (number, line) in lines(text).into_iter().enumerate() {
        let number = number + 1;
        if line.is_empty() {
            if let Some(data) = data.take() {
                events.push(SseEvent {
                    name: name.take().unwrap_or_else(|| "message".to_owned()),
                    data,
                });
            }
            name = None;
            pending = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        pending = true;
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_owned()),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            "id" | "retry" => {}
            other => return Err(format!("line {number}: unknown field `{other}`")),
        }
    }
    if pending {
        return Err("the stream ends inside an event (no blank line after it)".to_owned());
    }
    Ok(events)
}

/// The lines of `text`, split at LF, CRLF or CR; a final line without an end is kept.
fn lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        lines.push(&rest[..end]);
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    if !rest.is_empty() {
        lines.push(rest);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_comments_and_line_ends() {
        let body = b": keep-alive\n\nevent: progress\ndata: {\"stage\":\"accepted\"}\n\n\
                     event:done\r\ndata: {\"a\":\r\ndata:1}\r\nid: 7\r\r";
        assert_eq!(
            parse(body).unwrap(),
            [
                event("progress", r#"{"stage":"accepted"}"#),
                event("done", "{\"a\":\n1}"),
            ]
        );
    }

    #[test]
    fn an_event_without_a_name_is_a_message_and_one_without_data_is_not_dispatched() {
        assert_eq!(
            parse(b"data: x\n\nevent: empty\n\n").unwrap(),
            [event("message", "x")]
        );
        assert_eq!(parse(b"").unwrap(), []);
    }

    #[test]
    fn broken_streams_say_why() {
        for (body, why) in [
            (&b"event: done\ndata: {}\n"[..], "ends inside an event"),
            (b"event: done\ndata: {}", "ends inside an event"),
            (b"evnt: done\n\n", "line 1: unknown field `evnt`"),
            (
                b"<html>not a stream</html>",
                "unknown field `<html>not a stream</html>`",
            ),
            (b"data: \xff\n\n", "not UTF-8"),
        ] {
            let error = parse(body).unwrap_err();
            assert!(error.contains(why), "{body:?}: {error}");
        }
    }
}
