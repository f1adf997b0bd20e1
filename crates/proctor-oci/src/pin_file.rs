//! A small text editor for exactly one block of `registry.yaml`, in either of the two shapes
//! the registry files use:
//!
//! ```yaml
//! image: {index: null, platforms: {amd64: null, arm64: null}}   # flow, on one line
//! image:                                                       # or block
//!   index: null
//!   platforms:
//!     amd64: null
//!     arm64: null
//! ```
//!
//! It replaces those three scalar values and leaves every other byte of the file as it was
//! (comments, ordering, quoting, line endings). Anything else under `image:` — an unknown
//! key, a missing or repeated key, a nested value, a flow mapping spread over several lines —
//! is refused, because the file no longer has a shape this editor can change safely.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use proctor_contract::{CanonError, ErrorCode};

use crate::pin::Pins;

/// Where one scalar value sits in the file, and how a new value is written there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueSpan {
    /// Byte range of the current value; empty when the key has no value yet.
    start: usize,
    end: usize,
    /// The value directly follows the colon: a space goes first.
    needs_space: bool,
    /// The value sits in a flow mapping, where values are written double-quoted.
    in_flow: bool,
}

/// Where the three pinned values sit in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageBlock {
    index: ValueSpan,
    amd64: ValueSpan,
    arm64: ValueSpan,
}

/// Finds the `image:` block and its three values, or refuses with `ERR_PIN` saying what
/// is out of shape.
pub(crate) fn locate_image_block(text: &str) -> Result<ImageBlock, CanonError> {
    locate(text).map_err(|why| {
        CanonError::new(
            ErrorCode::Pin,
            format!(
                "the image block is not in the expected shape \
                 (image: {{index: …, platforms: {{amd64: …, arm64: …}}}}): {why}"
            ),
        )
    })
}

/// `text` with the three values replaced by `pins`.
pub(crate) fn with_pins(text: &str, pins: &Pins) -> Result<String, CanonError> {
    let block = locate_image_block(text)?;
    let mut edits = [
        (block.index, &pins.index),
        (block.amd64, &pins.amd64),
        (block.arm64, &pins.arm64),
    ];
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut edited = text.to_owned();
    for (span, value) in edits {
        // Quoted in flow mappings, and where `[` (an IPv6 host) would open a flow sequence;
        // the reference grammar has no character that needs escaping.
        let quoted = span.in_flow || value.host().starts_with('[');
        let scalar = if quoted {
            format!("\"{value}\"")
        } else {
            value.to_string()
        };
        let space = if span.needs_space { " " } else { "" };
        edited.replace_range(span.start..span.end, &format!("{space}{scalar}"));
    }
    Ok(edited)
}

/// Writes `contents` to `path` atomically, keeping the permissions of the file it replaces.
pub(crate) fn write_keeping_mode(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)
        .ok()
        .map(|metadata| metadata.permissions().mode() & 0o7777);
    proctor_fs::write_atomically(path, contents, mode)
}

/// One line: its byte offset in the file and its text without the line terminator.
struct Line<'a> {
    start: usize,
    text: &'a str,
}

impl Line<'_> {
    fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut start = 0;
    text.split_inclusive('\n')
        .map(|raw| {
            let line = Line {
                start,
                text: raw.trim_end_matches('\n').trim_end_matches('\r'),
            };
            start += raw.len();
            line
        })
        .collect()
}

/// The three values, found while walking the block.
#[derive(Default)]
struct Found {
    index: Option<ValueSpan>,
    platforms: bool,
    amd64: Option<ValueSpan>,
    arm64: Option<ValueSpan>,
}

impl Found {
    fn set(&mut self, key: &str, span: ValueSpan) -> Result<(), String> {
        let slot = match key {
            "index" => &mut self.index,
            "amd64" => &mut self.amd64,
            _ => &mut self.arm64,
        };
        if slot.replace(span).is_some() {
            return Err(format!("`{key}` appears more than once"));
        }
        Ok(())
    }

    fn open_platforms(&mut self) -> Result<(), String> {
        if std::mem::replace(&mut self.platforms, true) {
            return Err("`platforms` appears more than once".to_owned());
        }
        Ok(())
    }

    fn finish(self) -> Result<ImageBlock, String> {
        if !self.platforms {
            return Err("image.platforms is missing".to_owned());
        }
        Ok(ImageBlock {
            index: self.index.ok_or("image.index is missing")?,
            amd64: self.amd64.ok_or("image.platforms.amd64 is missing")?,
            arm64: self.arm64.ok_or("image.platforms.arm64 is missing")?,
        })
    }
}

fn locate(text: &str) -> Result<ImageBlock, String> {
    let lines = lines(text);
    let mut headers = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.text.starts_with("image:"));
    let (header_at, header) = headers.next().ok_or("there is no top-level `image:` key")?;
    if headers.next().is_some() {
        return Err("`image:` appears more than once".to_owned());
    }
    let after_key = header.start + "image:".len();
    let inline = &text[after_key..header.end()];
    let following = &lines[header_at + 1..];
    if is_blank_or_comment(inline) {
        return locate_block(text, following);
    }
    let brace = inline.trim_start_matches([' ', '\t']);
    if !brace.starts_with('{') || inline.len() == brace.len() {
        return Err(
            "`image:` must be followed by a flow mapping `{…}` or an indented block".to_owned(),
        );
    }
    let mut cursor = Cursor {
        text,
        pos: header.end() - brace.len(),
        end: header.end(),
    };
    let found = locate_flow(&mut cursor)?;
    cursor.skip_blanks();
    let rest = &text[cursor.pos..cursor.end];
    if !(rest.is_empty() || (rest.starts_with('#') && cursor.after_blank())) {
        return Err(format!("unexpected text `{rest}` after the image mapping"));
    }
    let next = following
        .iter()
        .find(|line| !is_blank_or_comment(line.text));
    if next.is_some_and(|line| line.text.starts_with([' ', '\t'])) {
        return Err("nothing may be nested under a flow `image:` mapping".to_owned());
    }
    Ok(found)
}

/// `{index: V, platforms: {amd64: V, arm64: V}}` on the header line, keys in any order.
fn locate_flow(cursor: &mut Cursor<'_>) -> Result<ImageBlock, String> {
    let mut found = Found::default();
    cursor.mapping(|cursor, key| match key {
        "index" => found.set(key, cursor.flow_scalar()?),
        "platforms" => {
            found.open_platforms()?;
            cursor.mapping(|cursor, key| match key {
                "amd64" | "arm64" => found.set(key, cursor.flow_scalar()?),
                other => Err(format!("unexpected key `{other}` under image.platforms")),
            })
        }
        other => Err(format!("unexpected key `{other}` under image")),
    })?;
    found.finish()
}

/// The indented block after a bare `image:` line.
fn locate_block(text: &str, following: &[Line<'_>]) -> Result<ImageBlock, String> {
    let mut found = Found::default();
    let mut key_indent = None;
    let mut platform_indent = None;
    let mut in_platforms = false;
    for line in following {
        if is_blank_or_comment(line.text) {
            continue;
        }
        let indent = line.text.len() - line.text.trim_start_matches(' ').len();
        if line.text[indent..].starts_with('\t') {
            return Err("tabs are not allowed in indentation".to_owned());
        }
        if indent == 0 {
            break;
        }
        let (key, value_at) = key_of(line)?;
        let key_indent = *key_indent.get_or_insert(indent);
        if indent == key_indent {
            in_platforms = false;
            match key {
                "index" => found.set(key, block_scalar(text, value_at, line)?)?,
                "platforms" => {
                    found.open_platforms()?;
                    if !is_blank_or_comment(&text[value_at..line.end()]) {
                        return Err("`platforms:` must be followed by an indented block".to_owned());
                    }
                    in_platforms = true;
                }
                other => return Err(format!("unexpected key `{other}` under image")),
            }
        } else if in_platforms && indent > key_indent {
            if *platform_indent.get_or_insert(indent) != indent {
                return Err("inconsistent indentation under platforms".to_owned());
            }
            match key {
                "amd64" | "arm64" => found.set(key, block_scalar(text, value_at, line)?)?,
                other => return Err(format!("unexpected key `{other}` under image.platforms")),
            }
        } else {
            return Err(format!("unexpected indentation at `{}`", line.text.trim()));
        }
    }
    found.finish()
}

fn is_blank_or_comment(text: &str) -> bool {
    let trimmed = text.trim_start_matches([' ', '\t']);
    trimmed.is_empty() || trimmed.starts_with('#')
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The key of a `key: value` line and the file offset just after its colon.
fn key_of<'a>(line: &Line<'a>) -> Result<(&'a str, usize), String> {
    let content = line.text.trim_start_matches(' ');
    let key_end = content
        .find(|c: char| !is_key_char(c))
        .unwrap_or(content.len());
    let (key, after) = content.split_at(key_end);
    let well_formed = !key.is_empty()
        && after.starts_with(':')
        && (after.len() == 1 || after[1..].starts_with([' ', '\t']));
    if !well_formed {
        return Err(format!("`{content}` is not a `key: value` line"));
    }
    let colon_at = line.start + (line.text.len() - content.len()) + key.len();
    Ok((key, colon_at + 1))
}

/// The span of the block-context scalar that starts after `value_at` on `line`: null, a
/// plain scalar or a simple quoted one, optionally followed by a comment.
fn block_scalar(text: &str, value_at: usize, line: &Line<'_>) -> Result<ValueSpan, String> {
    let rest = &text[value_at..line.end()];
    let leading = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let body = &rest[leading..];
    if body.is_empty() || body.starts_with('#') {
        return Ok(ValueSpan {
            start: value_at,
            end: value_at,
            needs_space: true,
            in_flow: false,
        });
    }
    let length = match quoted_length(body)? {
        Some(length) => {
            if !is_blank_or_comment(&body[length..]) || body[length..].starts_with('#') {
                return Err(format!("unexpected text after `{}`", &body[..length]));
            }
            length
        }
        None => {
            let plain = match body.find(" #").or_else(|| body.find("\t#")) {
                Some(comment) => &body[..comment],
                None => body,
            };
            let plain = plain.trim_end_matches([' ', '\t']);
            if plain.contains(": ") || plain.ends_with(':') {
                return Err(format!("`{plain}` is a mapping, not a scalar"));
            }
            plain.len()
        }
    };
    let start = value_at + leading;
    Ok(ValueSpan {
        start,
        end: start + length,
        needs_space: false,
        in_flow: false,
    })
}

/// The length of the quoted scalar `body` starts with (quotes included), `None` for a plain
/// scalar; refuses escapes and anything that is not a scalar.
fn quoted_length(body: &str) -> Result<Option<usize>, String> {
    match body.as_bytes().first() {
        Some(&quote @ (b'"' | b'\'')) => {
            let quote = char::from(quote);
            let close = body[1..]
                .find(quote)
                .ok_or_else(|| format!("unterminated quoted value `{body}`"))?;
            let length = close + 2;
            if body[1..length - 1].contains('\\') || body[length..].starts_with(quote) {
                return Err(format!("escapes in `{body}` are not supported"));
            }
            Ok(Some(length))
        }
        Some(b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`') => {
            Err(format!("`{body}` is not a plain scalar"))
        }
        _ => Ok(None),
    }
}

/// A position in the header line of a flow `image:` mapping.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..self.end]
    }

    fn skip_blanks(&mut self) -> usize {
        let rest = self.rest();
        let skipped = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        self.pos += skipped;
        skipped
    }

    fn after_blank(&self) -> bool {
        self.text[..self.pos].ends_with([' ', '\t'])
    }

    fn eat(&mut self, expected: char) -> Result<(), String> {
        if !self.rest().starts_with(expected) {
            return Err(format!("expected `{expected}` at `{}`", self.rest_or_end()));
        }
        self.pos += expected.len_utf8();
        Ok(())
    }

    fn rest_or_end(&self) -> &str {
        if self.rest().is_empty() {
            "end of line (the mapping must fit on one line)"
        } else {
            self.rest()
        }
    }

    /// `{key: …, key: …}`, calling `entry` with the cursor after each `key:`.
    fn mapping(
        &mut self,
        mut entry: impl FnMut(&mut Self, &str) -> Result<(), String>,
    ) -> Result<(), String> {
        self.skip_blanks();
        self.eat('{')?;
        loop {
            self.skip_blanks();
            let key_len = self
                .rest()
                .find(|c: char| !is_key_char(c))
                .unwrap_or(self.rest().len());
            if key_len == 0 {
                return Err(format!("expected a key at `{}`", self.rest_or_end()));
            }
            let key = self.text[self.pos..self.pos + key_len].to_owned();
            self.pos += key_len;
            self.eat(':')?;
            if !self.rest().starts_with([' ', '\t', ',', '}']) {
                return Err(format!("`{key}:` must be followed by a space"));
            }
            entry(self, &key)?;
            self.skip_blanks();
            if self.rest().starts_with('}') {
                self.pos += 1;
                return Ok(());
            }
            self.eat(',')?;
        }
    }

    /// A scalar value in a flow mapping: null, plain or simply quoted.
    fn flow_scalar(&mut self) -> Result<ValueSpan, String> {
        let skipped = self.skip_blanks();
        let body = self.rest();
        let length = match quoted_length(body)? {
            Some(length) => length,
            None => {
                let stop = body
                    .find([',', '}', '{', '[', ']', '#'])
                    .unwrap_or(body.len());
                let plain = body[..stop].trim_end_matches([' ', '\t']);
                if plain.contains(": ") || plain.ends_with(':') {
                    return Err(format!("`{plain}` is a mapping, not a scalar"));
                }
                plain.len()
            }
        };
        let span = ValueSpan {
            start: self.pos,
            end: self.pos + length,
            needs_space: skipped == 0,
            in_flow: true,
        };
        self.pos += length;
        Ok(span)
    }
}

#[cfg(test)]
mod tests {
    use serde_yaml_ng::Value;

    use super::*;

    const DIGEST_A: &str =
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const DIGEST_B: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const DIGEST_C: &str =
        "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    const REGISTRY_YAML: &str = "\
# text/stats@1 — counts words and lines.
ref: text/stats@1
description: Word and line counts.
build: {context: \".\", dockerfile: Dockerfile, port: 8000, cargo_package: processor-text-stats}
image:
  # null = unpinned; `proctor pin` fills these in.
  index: null
  platforms:
    amd64: null   # linux/amd64
    arm64: null
runtime: {cpu: 1.0, memory_gb: 0.5, timeout_s: 60, gpu: null}
outputs:
  - {path: stats.json, mime: application/json}
";

    fn pins(host: &str) -> Pins {
        let repo = format!("{host}/acme/proctor/text-stats");
        let pinned = |digest: &str| format!("{repo}@{digest}").parse().unwrap();
        Pins {
            index: pinned(DIGEST_A),
            amd64: pinned(DIGEST_B),
            arm64: pinned(DIGEST_C),
        }
    }

    fn image_values(text: &str) -> (Value, Value, Value) {
        let doc: Value = serde_yaml_ng::from_str(text).unwrap();
        let image = &doc["image"];
        (
            image["index"].clone(),
            image["platforms"]["amd64"].clone(),
            image["platforms"]["arm64"].clone(),
        )
    }

    fn string(value: impl std::fmt::Display) -> Value {
        Value::String(value.to_string())
    }

    /// The lines of `before` and `after` that differ.
    fn changed_lines<'a>(before: &'a str, after: &'a str) -> Vec<(&'a str, &'a str)> {
        assert_eq!(before.lines().count(), after.lines().count());
        before
            .lines()
            .zip(after.lines())
            .filter(|(a, b)| a != b)
            .collect()
    }

    #[test]
    fn replaces_only_the_three_values() {
        let pins = pins("127.0.0.1:5000");
        let pinned = with_pins(REGISTRY_YAML, &pins).unwrap();
        assert_eq!(
            image_values(&pinned),
            (
                string(&pins.index),
                string(&pins.amd64),
                string(&pins.arm64)
            )
        );
        assert_eq!(
            changed_lines(REGISTRY_YAML, &pinned),
            vec![
                ("  index: null", format!("  index: {}", pins.index).as_str()),
                (
                    "    amd64: null   # linux/amd64",
                    format!("    amd64: {}   # linux/amd64", pins.amd64).as_str()
                ),
                (
                    "    arm64: null",
                    format!("    arm64: {}", pins.arm64).as_str()
                ),
            ]
        );
        let before: Value = serde_yaml_ng::from_str(REGISTRY_YAML).unwrap();
        let after: Value = serde_yaml_ng::from_str(&pinned).unwrap();
        for key in ["ref", "description", "build", "runtime", "outputs"] {
            assert_eq!(before[key], after[key], "{key}");
        }
    }

    #[test]
    fn repinning_replaces_previous_pins_and_is_idempotent() {
        let first = with_pins(REGISTRY_YAML, &pins("127.0.0.1:5000")).unwrap();
        let second = with_pins(&first, &pins("ghcr.io")).unwrap();
        assert_eq!(second, with_pins(REGISTRY_YAML, &pins("ghcr.io")).unwrap());
        assert_eq!(with_pins(&second, &pins("ghcr.io")).unwrap(), second);
    }

    #[test]
    fn handles_quotes_tildes_empty_values_crlf_and_no_final_newline() {
        let text = "ref: a/b@1\r\nimage:\r\n    index: \"old@sha256:1\"  # was\r\n    platforms:\r\n\r\n        amd64: ~\r\n        # arm64 next\r\n        arm64:\r\nruntime: {}";
        let pins = pins("ghcr.io");
        let pinned = with_pins(text, &pins).unwrap();
        assert_eq!(
            pinned,
            format!(
                "ref: a/b@1\r\nimage:\r\n    index: {}  # was\r\n    platforms:\r\n\r\n        amd64: {}\r\n        # arm64 next\r\n        arm64: {}\r\nruntime: {{}}",
                pins.index, pins.amd64, pins.arm64
            )
        );
        assert_eq!(image_values(&pinned).2, string(&pins.arm64));
        let single = "image:\n  index: 'x'\n  platforms:\n    amd64: null #c\n    arm64: null\n";
        let pinned = with_pins(single, &pins).unwrap();
        assert_eq!(image_values(&pinned).0, string(&pins.index));
        assert!(pinned.contains(&format!("amd64: {} #c\n", pins.amd64)));
    }

    #[test]
    fn ipv6_hosts_are_quoted_and_stay_strings() {
        let pins = pins("[::1]:5000");
        let pinned = with_pins(REGISTRY_YAML, &pins).unwrap();
        assert!(pinned.contains(&format!("  index: \"{}\"\n", pins.index)));
        assert_eq!(image_values(&pinned).1, string(&pins.amd64));
        // A quoted value is replaced too.
        assert_eq!(with_pins(&pinned, &pins).unwrap(), pinned);
    }

    #[test]
    fn refuses_blocks_out_of_shape() {
        let cases = [
            ("ref: a/b@1\n", "no top-level `image:`"),
            ("image: null\n", "flow mapping `{…}` or an indented block"),
            (
                "image:\n  index: null\n  platforms:\n    amd64: null\n",
                "arm64 is missing",
            ),
            (
                "image:\n  index: null\n  platforms:\n    amd64: null\n    arm64: null\n    s390x: null\n",
                "`s390x`",
            ),
            (
                "image:\n  index: null\n  digest: x\n  platforms:\n    amd64: null\n    arm64: null\n",
                "`digest`",
            ),
            (
                "image:\n  index: null\n  platforms:\n    amd64: null\n    amd64: null\n    arm64: null\n",
                "more than once",
            ),
            (
                "image:\n  index: null\n  platforms: {amd64: null, arm64: null}\n",
                "indented block",
            ),
            (
                "image:\n  index:\n    nested: x\n  platforms:\n    amd64: null\n    arm64: null\n",
                "unexpected indentation",
            ),
            (
                "image:\n  index: [a]\n  platforms:\n    amd64: null\n    arm64: null\n",
                "not a plain scalar",
            ),
            (
                "image:\n  index: null\n  platforms:\n    amd64: null\n      arm64: null\n",
                "inconsistent",
            ),
            (
                "image:\n  index: null\n  platforms:\n  \tamd64: null\n    arm64: null\n",
                "tabs",
            ),
            (
                "image:\n  index: \"a\\\"b\"\n  platforms:\n    amd64: null\n    arm64: null\n",
                "escapes",
            ),
            (
                "image:\n  index: a: b\n  platforms:\n    amd64: null\n    arm64: null\n",
                "mapping",
            ),
            ("image:\n  index: null\n", "platforms is missing"),
            (
                "image:\n  platforms:\n    amd64: null\n    arm64: null\n",
                "index is missing",
            ),
            (
                "image:\n  index: null\n  platforms:\n    amd64: null\n    arm64: null\nimage:\n",
                "more than once",
            ),
            ("image:\n  - index\n", "not a `key: value` line"),
        ];
        for (text, why) in cases {
            let err = locate_image_block(text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"));
            assert_eq!(err.code(), ErrorCode::Pin, "{text}");
            assert!(err.message().contains("pin refused"), "{text}");
            assert!(err.message().contains(why), "{text}: {err}");
        }
    }

    /// The shape the shipped registry files use.
    const FLOW_REGISTRY_YAML: &str = "\
ref: text/stats@1
build: {context: \".\", dockerfile: Dockerfile, port: 8000, cargo_package: processor-text-stats}
image: {index: null, platforms: {amd64: null, arm64: null}}
runtime: {cpu: 0.5, memory_gb: 0.25, timeout_s: 30, gpu: null}
";

    #[test]
    fn pins_the_flow_form_on_its_own_line() {
        let pins = pins("127.0.0.1:5000");
        let pinned = with_pins(FLOW_REGISTRY_YAML, &pins).unwrap();
        let expected_line = format!(
            "image: {{index: \"{}\", platforms: {{amd64: \"{}\", arm64: \"{}\"}}}}",
            pins.index, pins.amd64, pins.arm64
        );
        assert_eq!(
            changed_lines(FLOW_REGISTRY_YAML, &pinned),
            vec![(
                "image: {index: null, platforms: {amd64: null, arm64: null}}",
                expected_line.as_str()
            )]
        );
        assert_eq!(
            image_values(&pinned),
            (
                string(&pins.index),
                string(&pins.amd64),
                string(&pins.arm64)
            )
        );
        // Re-pinning replaces the quoted values and is idempotent.
        let again = with_pins(&pinned, &super::tests::pins("ghcr.io")).unwrap();
        let fresh = with_pins(FLOW_REGISTRY_YAML, &super::tests::pins("ghcr.io")).unwrap();
        assert_eq!(again, fresh);
        assert_eq!(
            with_pins(&again, &super::tests::pins("ghcr.io")).unwrap(),
            again
        );
    }

    #[test]
    fn flow_form_allows_any_key_order_spacing_comments_and_plain_values() {
        let pins = pins("ghcr.io");
        let text = format!(
            "image:   {{ platforms: {{arm64: ~,amd64: }} , index: {} }}  # pinned\nnext: 1\n",
            "ghcr.io/acme/proctor/text-stats@sha256:0000"
        );
        let pinned = with_pins(&text, &pins).unwrap();
        assert_eq!(
            pinned,
            format!(
                "image:   {{ platforms: {{arm64: \"{}\",amd64: \"{}\"}} , index: \"{}\" }}  # pinned\nnext: 1\n",
                pins.arm64, pins.amd64, pins.index
            )
        );
        assert_eq!(
            image_values(&pinned),
            (
                string(&pins.index),
                string(&pins.amd64),
                string(&pins.arm64)
            )
        );
        let no_space_after_comma = "image: {index: 'x',platforms: {amd64: null,arm64: null}}";
        let pinned = with_pins(no_space_after_comma, &pins).unwrap();
        assert_eq!(image_values(&pinned).0, string(&pins.index));
    }

    #[test]
    fn refuses_flow_forms_out_of_shape() {
        let cases = [
            (
                "image: {index: null, platforms: {amd64: null}}\n",
                "arm64 is missing",
            ),
            (
                "image: {index: null, platforms: {amd64: null, arm64: null, riscv64: null}}\n",
                "`riscv64`",
            ),
            (
                "image: {index: null, digest: x, platforms: {amd64: null, arm64: null}}\n",
                "`digest`",
            ),
            (
                "image: {index: null, index: null, platforms: {amd64: null, arm64: null}}\n",
                "more than once",
            ),
            (
                "image: {index: null, platforms: {amd64: null, arm64: null}\n",
                "fit on one line",
            ),
            (
                "image: {index: null,\n  platforms: {amd64: null, arm64: null}}\n",
                "fit on one line",
            ),
            (
                "image: {index: null, platforms: {amd64: null, arm64: null}} x\n",
                "unexpected text",
            ),
            (
                "image: {index: null, platforms: {amd64: null, arm64: null}}#c\n",
                "unexpected text",
            ),
            (
                "image: {index: {a: b}, platforms: {amd64: null, arm64: null}}\n",
                "not a plain scalar",
            ),
            (
                "image: {index: a: b, platforms: {amd64: null, arm64: null}}\n",
                "mapping",
            ),
            ("image: {index: null, platforms: [amd64]}\n", "expected `{`"),
            (
                "image: {index: null, platforms: {amd64: null, arm64: null}}\n  extra: 1\n",
                "nested",
            ),
            (
                "image:{index: null, platforms: {amd64: null, arm64: null}}\n",
                "flow mapping",
            ),
            ("image: {index: null}\n", "platforms is missing"),
            (
                "image: {index:null, platforms: {amd64: null, arm64: null}}\n",
                "followed by a space",
            ),
        ];
        for (text, why) in cases {
            let err = locate_image_block(text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text}"));
            assert_eq!(err.code(), ErrorCode::Pin, "{text}");
            assert!(err.message().contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn writes_keep_permissions_and_leave_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_keeping_mode(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
