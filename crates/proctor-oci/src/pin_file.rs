//! A small text editor for exactly one block of `registry.yaml`:
//!
//! ```yaml
//! image:
//!   index: null
//!   platforms:
//!     amd64: null
//!     arm64: null
//! ```
//!
//! It replaces those three scalar values and leaves every other byte of the file as it was
//! (comments, ordering, quoting, line endings). Anything else under `image:` — a flow
//! mapping, an unknown key, a missing or repeated key, a nested value — is refused, because
//! the file no longer has the shape this editor can change safely.

use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

use proctor_contract::{CanonError, ErrorCode};
use regex::Regex;

use crate::pin::Pins;

/// The shape of a value written into the block: `HOST/REPO@sha256:<64 hex>`.
static PINNED_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9._\-:/\[\]]+@sha256:[0-9a-f]{64}$").expect("the pattern is valid")
});

/// The byte range of one scalar value in the file; empty when the key has no value yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ValueSpan {
    start: usize,
    end: usize,
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
            format!("the image block is not in the expected shape (image: / index: / platforms: / amd64: / arm64:): {why}"),
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
        if !PINNED_REFERENCE.is_match(value) {
            return Err(CanonError::new(
                ErrorCode::Pin,
                format!("`{value}` is not a pinned reference HOST/REPO@sha256:<digest>"),
            ));
        }
        // `[` would open a flow sequence: such hosts (IPv6) are written double-quoted.
        let scalar = if value.starts_with('[') {
            format!("\"{value}\"")
        } else {
            value.clone()
        };
        let replacement = if span.start == span.end {
            format!(" {scalar}")
        } else {
            scalar
        };
        edited.replace_range(span.start..span.end, &replacement);
    }
    Ok(edited)
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename,
/// keeping the permissions of the file it replaces.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".proctor-")
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    if let Ok(metadata) = std::fs::metadata(path) {
        temp.as_file().set_permissions(metadata.permissions())?;
    }
    temp.persist(path).map(|_| ()).map_err(|err| err.error)
}

/// One line: its byte offset in the file and its text without the line terminator.
struct Line<'a> {
    start: usize,
    text: &'a str,
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
    if !is_blank_or_comment(&header.text["image:".len()..]) {
        return Err(
            "`image:` must be followed by an indented block, not an inline value".to_owned(),
        );
    }

    let (mut index, mut platforms, mut amd64, mut arm64) = (None, false, None, None);
    let mut key_indent = None;
    let mut platform_indent = None;
    let mut in_platforms = false;
    for line in &lines[header_at + 1..] {
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
                "index" => set_once(&mut index, "index", scalar(text, value_at, line)?)?,
                "platforms" => {
                    if platforms {
                        return Err("`platforms:` appears more than once".to_owned());
                    }
                    if !is_blank_or_comment(&text[value_at..line.start + line.text.len()]) {
                        return Err("`platforms:` must be followed by an indented block".to_owned());
                    }
                    platforms = true;
                    in_platforms = true;
                }
                other => return Err(format!("unexpected key `{other}` under image")),
            }
        } else if in_platforms && indent > key_indent {
            if *platform_indent.get_or_insert(indent) != indent {
                return Err("inconsistent indentation under platforms".to_owned());
            }
            match key {
                "amd64" => set_once(&mut amd64, "amd64", scalar(text, value_at, line)?)?,
                "arm64" => set_once(&mut arm64, "arm64", scalar(text, value_at, line)?)?,
                other => return Err(format!("unexpected key `{other}` under image.platforms")),
            }
        } else {
            return Err(format!("unexpected indentation at `{}`", line.text.trim()));
        }
    }
    if !platforms {
        return Err("image.platforms is missing".to_owned());
    }
    Ok(ImageBlock {
        index: index.ok_or("image.index is missing")?,
        amd64: amd64.ok_or("image.platforms.amd64 is missing")?,
        arm64: arm64.ok_or("image.platforms.arm64 is missing")?,
    })
}

fn set_once(slot: &mut Option<ValueSpan>, key: &str, span: ValueSpan) -> Result<(), String> {
    if slot.replace(span).is_some() {
        return Err(format!("`{key}:` appears more than once"));
    }
    Ok(())
}

fn is_blank_or_comment(text: &str) -> bool {
    let trimmed = text.trim_start_matches([' ', '\t']);
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// The key of a `key: value` line and the file offset just after its colon.
fn key_of<'a>(line: &Line<'a>) -> Result<(&'a str, usize), String> {
    let content = line.text.trim_start_matches(' ');
    let key_end = content
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
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

/// The span of the scalar that starts after `value_at` on `line`: null, a plain scalar or a
/// simple quoted one, optionally followed by a comment.
fn scalar(text: &str, value_at: usize, line: &Line<'_>) -> Result<ValueSpan, String> {
    let rest = &text[value_at..line.start + line.text.len()];
    let leading = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let body = &rest[leading..];
    let start = value_at + leading;
    if body.is_empty() || body.starts_with('#') {
        return Ok(ValueSpan {
            start: value_at,
            end: value_at,
        });
    }
    let length = match body.as_bytes()[0] {
        quote @ (b'"' | b'\'') => {
            let close = body[1..]
                .find(char::from(quote))
                .ok_or_else(|| format!("unterminated quoted value `{body}`"))?;
            let inner = &body[1..1 + close];
            if inner.contains('\\') || body[2 + close..].starts_with(char::from(quote)) {
                return Err(format!("escapes in `{body}` are not supported"));
            }
            if !is_blank_or_comment(&body[2 + close..]) || body[2 + close..].starts_with('#') {
                return Err(format!("unexpected text after `{}`", &body[..2 + close]));
            }
            2 + close
        }
        b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' => {
            return Err(format!("`{body}` is not a plain scalar"));
        }
        _ => {
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
    Ok(ValueSpan {
        start,
        end: start + length,
    })
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
        Pins {
            index: format!("{repo}@{DIGEST_A}"),
            amd64: format!("{repo}@{DIGEST_B}"),
            arm64: format!("{repo}@{DIGEST_C}"),
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

    fn string(value: &str) -> Value {
        Value::String(value.to_owned())
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
            (
                "image: {index: null, platforms: {amd64: null, arm64: null}}\n",
                "indented block",
            ),
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
            let err = locate_image_block(text).unwrap_err();
            assert_eq!(err.code(), ErrorCode::Pin, "{text}");
            assert!(err.message().contains("pin refused"), "{text}");
            assert!(err.message().contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_values_that_are_not_pinned_references() {
        let mut bad = pins("ghcr.io");
        bad.arm64 = "ghcr.io/a/b:latest".to_owned();
        let err = with_pins(REGISTRY_YAML, &bad).unwrap_err();
        assert!(err.message().contains("not a pinned reference"));
        bad.arm64 = format!("ghcr.io/a/b@{DIGEST_A} # x");
        assert!(with_pins(REGISTRY_YAML, &bad).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn atomic_writes_keep_permissions_and_leave_no_temp_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
