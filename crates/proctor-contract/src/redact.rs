//! Redaction of secrets from text and JSON before they are logged, printed or recorded.
//!
//! One [`Redactor`] knows the values a run was given — its secrets and its pass-through
//! variables — and masks them wherever they appear: verbatim, percent-encoded (wholly or in
//! part, as in a URL), JSON-escaped, and, for a value that is a URL with credentials, its
//! userinfo and its password on their own. It then masks whatever has the shape of a
//! credential, whatever its value: `Authorization` and `Cookie` header values, bearer
//! tokens, `api_key=`/`password:` pairs, URL userinfo, `sk-…`/`ghp_…`-style keys and JWTs,
//! and, in free text, long hex and base64 runs.
//!
//! Text is redacted before it is cut ([`Redactor::truncate_redacted`]): a cut made first
//! could leave the beginning of a secret that no longer matches anything.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

/// What replaces a secret.
const MASK: &str = "[REDACTED]";
/// What ends a text that [`Redactor::truncate_redacted`] cut.
const ELLIPSIS: &str = "…";
/// Secret values shorter than this, in bytes, are not masked verbatim (they would mask
/// common words).
const MIN_SECRET_LEN: usize = 6;

/// Names whose value is a credential: `api_key`, `x-api-key`, `OPENAI_API_KEY`,
/// `client_secret`, `password`, `token`, … (a fragment of case-insensitive patterns).
const CREDENTIAL_KEY: &str = r"(?:[a-z0-9]+[_-])*(?:api[_-]?key|access[_-]?token|refresh[_-]?token|token|secret|password|passwd|modal[_-]key)";
/// Headers whose whole value is a credential (a fragment of case-insensitive patterns).
const CREDENTIAL_HEADER: &str = r"(?:proxy-)?authorization|(?:set-)?cookie";
/// `scheme://userinfo@`: a URL's scheme (group 1) and its userinfo (group 2), up to the
/// last `@` before the path.
const URL_USERINFO: &str = r#"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s?#"'<>\\]+)@"#;

struct Rule {
    pattern: Regex,
    replace: fn(&Captures<'_>) -> String,
}

fn rule(pattern: &str, replace: fn(&Captures<'_>) -> String) -> Rule {
    Rule {
        pattern: Regex::new(pattern).expect("redaction patterns are valid"),
        replace,
    }
}

/// Shapes that are credentials wherever they appear.
static CREDENTIAL_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // Credential headers: the whole value, up to the end of the line or a quote.
        rule(
            &format!(r#"(?i)\b((?:{CREDENTIAL_HEADER})["']?\s*[:=]\s*["']?)[^\r\n"']+"#),
            |c| format!("{}{MASK}", &c[1]),
        ),
        // Bearer tokens anywhere.
        rule(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+", |c| {
            format!("{}{MASK}", &c[1])
        }),
        // key=value and "key": "value" pairs whose key names a credential. A value in
        // UPPER_SNAKE_CASE is the name of a variable (`missing required secret:
        // OPENAI_API_KEY`), not a credential.
        rule(
            &format!(r#"(?i)\b({CREDENTIAL_KEY}["']?\s*[=:]\s*["']?)([^\s"'&,;}}]+)"#),
            |c| {
                if is_variable_name(&c[2]) {
                    c[0].to_owned()
                } else {
                    format!("{}{MASK}", &c[1])
                }
            },
        ),
        rule(URL_USERINFO, |c| format!("{}{MASK}@", &c[1])),
        // Keys and tokens of well-known shapes: sk-…, ghp_…, github_pat_…, xoxb-…, AWS
        // access key ids, JWTs.
        rule(
            r"\b(?:(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}\b|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
            |_| MASK.to_owned(),
        ),
    ]
});

/// Long random-looking runs: likely credentials in free text, but also the shape of
/// digests, ids and file names, so they are not applied to single-token JSON strings.
static ENTROPY_RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // Long hex strings, unless they are a content digest (sha256:, b3:, …).
        rule(r"(?i)(\b[a-z0-9]+:)?\b[0-9a-f]{40,}\b", |c| {
            match c.get(1) {
                Some(_) => c[0].to_owned(),
                None => MASK.to_owned(),
            }
        }),
        // Long base64 / base64url runs that mix cases and digits.
        rule(r"\b[A-Za-z0-9+_-]{40,}={0,2}", |c| {
            let text = &c[0];
            let mixed = text.bytes().any(|b| b.is_ascii_digit())
                && text.bytes().any(|b| b.is_ascii_uppercase())
                && text.bytes().any(|b| b.is_ascii_lowercase());
            if mixed {
                MASK.to_owned()
            } else {
                text.to_owned()
            }
        }),
    ]
});

/// A URL's userinfo, to find the credentials inside a value.
static URL_USERINFO_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(URL_USERINFO).expect("the userinfo pattern is valid"));

/// A JSON key whose value is a credential, whole.
static CREDENTIAL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^(?:{CREDENTIAL_KEY}|{CREDENTIAL_HEADER})$"))
        .expect("the credential name pattern is valid")
});

/// Masks secrets in text and JSON: the values it was given, in every form they may take,
/// plus every shape of credential (see the module documentation).
///
/// Give it the values of every secret and pass-through variable of a run ([`Redactor::new`],
/// [`Extend`]); values shorter than 6 bytes are not masked verbatim. Its `Debug` output
/// never shows a value.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form of every value, searched in the text as it is; longest first.
    literal_forms: Vec<Vec<u8>>,
    /// The same forms percent-decoded, searched in the percent-decoded text; longest first.
    decoded_forms: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor that also masks the given secret values wherever they appear.
    pub fn new(secret_values: impl IntoIterator<Item = String>) -> Redactor {
        let mut redactor = Redactor::default();
        redactor.extend(secret_values);
        redactor
    }

    /// Adds every value `other` masks.
    pub fn merge(&mut self, other: &Redactor) {
        self.literal_forms
            .extend(other.literal_forms.iter().cloned());
        self.decoded_forms
            .extend(other.decoded_forms.iter().cloned());
        sort_longest_first(&mut self.literal_forms);
        sort_longest_first(&mut self.decoded_forms);
    }

    /// `text` with every secret masked: known values in any of their forms, then every
    /// shape of credential.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.redact_text(text, true)
    }

    /// `text` redacted, then cut to at most `max_bytes` bytes — on a character boundary,
    /// never inside a mask, ending in `…` — when it is longer (empty when `max_bytes`
    /// cannot even hold the `…`). Because redaction comes first, a cut can never expose
    /// the beginning of a secret.
    pub fn truncate_redacted(&self, text: &str, max_bytes: usize) -> String {
        let redacted = self.redact(text);
        if redacted.len() <= max_bytes {
            return redacted.into_owned();
        }
        let Some(budget) = max_bytes.checked_sub(ELLIPSIS.len()) else {
            return String::new();
        };
        let mut cut = redacted.floor_char_boundary(budget);
        let window = redacted.floor_char_boundary(cut.saturating_sub(MASK.len() - 1));
        if let Some(at) = redacted[window..].find(MASK)
            && window + at < cut
        {
            cut = window + at;
        }
        format!("{}{ELLIPSIS}", &redacted[..cut])
    }

    /// `value` with secrets masked in every string, object keys included:
    /// - known values and credential shapes everywhere;
    /// - under a key that names a credential (`api_key`, `password`, `authorization`, …),
    ///   every string and number, whole;
    /// - long hex and base64 runs only in strings holding white space (messages): a
    ///   single-token string is an id, a path or a digest, which evidence must keep.
    ///
    /// A number whose digits hold a known value becomes its masked text.
    pub fn redact_json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) => Value::String(self.redact_json_string(text)),
            Value::Number(number) => {
                let digits = number.to_string();
                match self.mask_values(&digits) {
                    Cow::Borrowed(_) => value.clone(),
                    Cow::Owned(masked) => Value::String(masked),
                }
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|i| self.redact_json(i)).collect())
            }
            Value::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, item)| {
                        let item = if CREDENTIAL_NAME.is_match(key) {
                            self.mask_json(item)
                        } else {
                            self.redact_json(item)
                        };
                        (self.redact_json_string(key), item)
                    })
                    .collect(),
            ),
            Value::Null | Value::Bool(_) => value.clone(),
        }
    }

    /// A JSON string redacted as [`Redactor::redact_json`] says.
    fn redact_json_string(&self, text: &str) -> String {
        self.redact_text(text, text.contains(char::is_whitespace))
            .into_owned()
    }

    /// `value` with every non-empty string and every number masked whole (keys redacted).
    fn mask_json(&self, value: &Value) -> Value {
        match value {
            Value::String(text) if text.is_empty() => value.clone(),
            Value::String(_) | Value::Number(_) => Value::String(MASK.to_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.mask_json(i)).collect()),
            Value::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, item)| (self.redact_json_string(key), self.mask_json(item)))
                    .collect(),
            ),
            Value::Null | Value::Bool(_) => value.clone(),
        }
    }

    /// Known values masked, then credential shapes, then (with `entropy`) long random-
    /// looking runs.
    fn redact_text<'a>(&self, text: &'a str, entropy: bool) -> Cow<'a, str> {
        let mut out = self.mask_values(text);
        let entropy_rules: &[Rule] = if entropy { &ENTROPY_RULES } else { &[] };
        for rule in CREDENTIAL_RULES.iter().chain(entropy_rules) {
            if rule.pattern.is_match(&out) {
                out = Cow::Owned(rule.pattern.replace_all(&out, rule.replace).into_owned());
            }
        }
        out
    }

    /// `text` with every known value masked: first as written, then wherever the text,
    /// percent-decoded, holds one (`p%40ss`, `p%40s%73` for `p@ss`).
    fn mask_values<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        if self.literal_forms.is_empty() {
            return out;
        }
        let literal = find_all(text.as_bytes(), &self.literal_forms);
        if !literal.is_empty() {
            out = Cow::Owned(mask(text, literal));
        }
        if !self.decoded_forms.is_empty() && out.contains('%') {
            let (decoded, starts) = percent_decode(&out);
            let encoded: Vec<Range<usize>> = find_all(&decoded, &self.decoded_forms)
                .into_iter()
                .map(|span| starts[span.start]..starts[span.end])
                .collect();
            if !encoded.is_empty() {
                out = Cow::Owned(mask(&out, encoded));
            }
        }
        out
    }
}

impl Extend<String> for Redactor {
    /// Adds secret values to mask.
    fn extend<I: IntoIterator<Item = String>>(&mut self, secret_values: I) {
        for value in secret_values {
            for form in forms_of(&value) {
                let decoded = percent_decode(&form).0;
                if decoded.len() >= MIN_SECRET_LEN {
                    if decoded != form.as_bytes() {
                        self.literal_forms.push(decoded.clone());
                    }
                    self.decoded_forms.push(decoded);
                }
                self.literal_forms.push(form.into_bytes());
            }
        }
        sort_longest_first(&mut self.literal_forms);
        sort_longest_first(&mut self.decoded_forms);
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("forms", &self.literal_forms.len())
            .finish_non_exhaustive()
    }
}

/// The forms in which `value` may appear: as is, JSON-escaped, and, when it holds URLs
/// with credentials, each userinfo and each password alone. Forms shorter than
/// [`MIN_SECRET_LEN`] are left out.
fn forms_of(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    let quoted = Value::String(value.to_owned()).to_string();
    forms.push(quoted[1..quoted.len() - 1].to_owned());
    for url in URL_USERINFO_PATTERN.captures_iter(value) {
        let userinfo = &url[2];
        forms.push(userinfo.to_owned());
        if let Some((_, password)) = userinfo.split_once(':') {
            forms.push(password.to_owned());
        }
    }
    forms.retain(|form| form.len() >= MIN_SECRET_LEN);
    forms
}

/// Sorts longest first (ties by content) and removes duplicates.
fn sort_longest_first(forms: &mut Vec<Vec<u8>>) {
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
}

/// Whether `text` is an UPPER_SNAKE_CASE variable name.
fn is_variable_name(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_uppercase())
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Where `needles` occur in `haystack`: leftmost first, never overlapping, the longest
/// needle at each place (`needles` are sorted longest first and none is empty).
fn find_all(haystack: &[u8], needles: &[Vec<u8>]) -> Vec<Range<usize>> {
    let mut first_bytes = [false; 256];
    for needle in needles {
        first_bytes[usize::from(needle[0])] = true;
    }
    let mut found = Vec::new();
    let mut at = 0;
    while at < haystack.len() {
        let rest = &haystack[at..];
        let needle = first_bytes[usize::from(rest[0])]
            .then(|| needles.iter().find(|needle| rest.starts_with(needle)))
            .flatten();
        match needle {
            Some(needle) => {
                found.push(at..at + needle.len());
                at += needle.len();
            }
            None => at += 1,
        }
    }
    found
}

/// `text` with each span (sorted by start) widened to whole characters and replaced by
/// the mask; overlapping spans are masked once.
fn mask(text: &str, spans: Vec<Range<usize>>) -> String {
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        let span = text.floor_char_boundary(span.start)..text.ceil_char_boundary(span.end);
        match merged.last_mut() {
            Some(last) if span.start < last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for span in merged {
        out.push_str(&text[copied..span.start]);
        out.push_str(MASK);
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` with every `%XX` decoded, and where in `text` each decoded byte begins, followed
/// by `text.len()`: decoded span `a..b` came from `text[starts[a]..starts[b]]`.
fn percent_decode(text: &str) -> (Vec<u8>, Vec<usize>) {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut starts = Vec::with_capacity(bytes.len() + 1);
    let mut at = 0;
    while at < bytes.len() {
        starts.push(at);
        let escaped = match bytes[at..] {
            [b'%', high, low, ..] => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                decoded.push((high << 4) | low);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    starts.push(bytes.len());
    (decoded, starts)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn redact(text: &str) -> String {
        Redactor::new(["hunter2-value".to_owned()])
            .redact(text)
            .into_owned()
    }

    #[test]
    fn masks_credentials() {
        let cases = [
            (
                "Authorization: Bearer abc.def-ghi",
                "Authorization: [REDACTED]",
            ),
            (
                "authorization=Basic dXNlcjpwYXNz",
                "authorization=[REDACTED]",
            ),
            (
                r#"{"Proxy-Authorization":"Digest username=u, response=r"}"#,
                r#"{"Proxy-Authorization":"[REDACTED]"}"#,
            ),
            ("Cookie: session=abc123; theme=dark", "Cookie: [REDACTED]"),
            (
                "sent bearer eyJhbGciOi.x.y now",
                "sent bearer [REDACTED] now",
            ),
            ("GET /x?api_key=abc123&q=1", "GET /x?api_key=[REDACTED]&q=1"),
            ("token=zzz", "token=[REDACTED]"),
            ("client_secret=zz9 x", "client_secret=[REDACTED] x"),
            ("X-Api-Key: k-123", "X-Api-Key: [REDACTED]"),
            ("OPENAI_API_KEY=whatever", "OPENAI_API_KEY=[REDACTED]"),
            (r#"{"api_key": "v"}"#, r#"{"api_key": "[REDACTED]"}"#),
            (
                "https://user:pw@example.com/x",
                "https://[REDACTED]@example.com/x",
            ),
            (
                "https://ghp-token@example.com/x",
                "https://[REDACTED]@example.com/x",
            ),
            (
                "postgres://u:p@ss@db:5432/x",
                "postgres://[REDACTED]@db:5432/x",
            ),
            ("key sk-abcdefghijklmnop1234 used", "key [REDACTED] used"),
            (
                "push with ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "push with [REDACTED]",
            ),
            ("id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED]."),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature-1 ok",
                "jwt [REDACTED] ok",
            ),
            (
                "the value hunter2-value leaked",
                "the value [REDACTED] leaked",
            ),
            (&format!("hex {}", "ab12".repeat(12)), "hex [REDACTED]"),
            (
                "b64 QWxhZGRpbjpvcGVuIHNlc2FtZQ0123456789abcdXYZ",
                "b64 [REDACTED]",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn keeps_digests_paths_ids_and_variable_names() {
        let digest = format!("sha256:{}", "a1".repeat(32));
        let cid = format!("b3:{}", "0f".repeat(32));
        for text in [
            digest.as_str(),
            cid.as_str(),
            "/artifacts/outputs/demo/3f2a9c1e-6a4b-4c1d-9e8f-0123456789ab/outputs.json",
            "execution.settle",
            "mode=mock;ref=llm/litellm@1;secrets=OPENAI_API_KEY",
            "http://127.0.0.1:8000/healthz",
            "missing required secret: OPENAI_API_KEY, ghcr-pull",
            "prompt_tokens=7 max_tokens: 64",
            "write to git@github.com:org/repo.git",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn masks_values_percent_encoded_json_escaped_and_inside_urls() {
        let redactor = Redactor::new([
            "p@ss:w/rd-42".to_owned(),
            "quote\"d-secret".to_owned(),
            "https://alice:wonder-land@proxy.example/v1".to_owned(),
            "short".to_owned(),
        ]);
        let cases = [
            ("q=p%40ss%3Aw%2Frd-42&x=1", "q=[REDACTED]&x=1"),
            ("q=p%40ss%3aw%2frd-42", "q=[REDACTED]"),
            ("q=%70%40ss:w/rd-42", "q=[REDACTED]"),
            (r#"{"v":"quote\"d-secret"}"#, r#"{"v":"[REDACTED]"}"#),
            (
                "via proxy.example as alice:wonder-land",
                "via proxy.example as [REDACTED]",
            ),
            ("the password wonder-land", "the password [REDACTED]"),
            ("the password wonder%2Dland", "the password [REDACTED]"),
            ("a short word", "a short word"),
            ("100% sure, 50%", "100% sure, 50%"),
        ];
        for (input, want) in cases {
            assert_eq!(redactor.redact(input), want, "{input}");
        }
        assert_eq!(
            redactor.redact("é%C3%A9 p%40ss:w/rd-42é"),
            "é%C3%A9 [REDACTED]é"
        );
        assert!(!format!("{redactor:?}").contains("wonder"));
    }

    #[test]
    fn the_longest_value_wins_and_values_can_be_added() {
        let mut redactor = Redactor::new(["abcdef".to_owned()]);
        assert_eq!(redactor.redact("xabcdefghy"), "x[REDACTED]ghy");
        redactor.extend(["abcdefgh".to_owned()]);
        assert_eq!(redactor.redact("xabcdefghy"), "x[REDACTED]y");
        let mut merged = Redactor::default();
        merged.merge(&redactor);
        assert_eq!(
            merged.redact("xabcdefghy abcdef"),
            "x[REDACTED]y [REDACTED]"
        );
    }

    #[test]
    fn truncation_comes_after_redaction_and_never_cuts_a_mask() {
        let redactor = Redactor::new(["sk-live-0123456789".to_owned()]);
        let text = format!("{}sk-live-0123456789 tail", "x".repeat(10));
        assert_eq!(
            redactor.truncate_redacted(&text, 1000),
            "xxxxxxxxxx[REDACTED] tail"
        );
        assert_eq!(redactor.truncate_redacted(&text, 18), "xxxxxxxxxx…");
        assert_eq!(
            redactor.truncate_redacted(&text, 23),
            "xxxxxxxxxx[REDACTED]…"
        );
        assert_eq!(redactor.truncate_redacted("ééé", 5), "é…");
        assert_eq!(redactor.truncate_redacted("abcdef", 2), "");
    }

    #[test]
    fn json_is_redacted_in_keys_values_and_credential_fields() {
        let redactor = Redactor::new(["s3cret-value".to_owned(), "12345678".to_owned()]);
        let inputs_hash = "ab".repeat(32);
        let value = json!({
            "message": "provider failed: s3cret-value via https://u:p@h/ and token=abc",
            "s3cret-value": [1, "x s3cret-value", null, true],
            "pin": 9_912_345_678_u64,
            "headers": {"Authorization": "Basic dXNlcjpwYXNz", "accept": "*/*"},
            "api_key": {"primary": "k1", "count": 2, "empty": ""},
            "inputs_hash": inputs_hash,
            "note": format!("hash {}", "cd".repeat(32)),
            "path": "/artifacts/outputs/MyReport2024FinalVersionWithChartsAndMore.txt",
        });
        assert_eq!(
            redactor.redact_json(&value),
            json!({
                "message": "provider failed: [REDACTED] via https://[REDACTED]@h/ and token=[REDACTED]",
                "[REDACTED]": [1, "x [REDACTED]", null, true],
                "pin": "99[REDACTED]",
                "headers": {"Authorization": "[REDACTED]", "accept": "*/*"},
                "api_key": {"primary": "[REDACTED]", "count": "[REDACTED]", "empty": ""},
                "inputs_hash": inputs_hash,
                "note": "hash [REDACTED]",
                "path": "/artifacts/outputs/MyReport2024FinalVersionWithChartsAndMore.txt",
            })
        );
    }

    /// `text` with some bytes percent-encoded, as `encode` (one flag per byte) says.
    fn percent_encode_some(text: &str, encode: &[bool]) -> String {
        let mut out = String::new();
        for (i, byte) in text.bytes().enumerate() {
            if encode.get(i).copied().unwrap_or(false) || !byte.is_ascii() {
                out.push_str(&format!("%{byte:02X}"));
            } else {
                out.push(char::from(byte));
            }
        }
        out
    }

    proptest! {
        /// No registered value survives in arbitrary surrounding text, whether it appears
        /// as is or with any of its bytes percent-encoded: neither the output nor the
        /// output percent-decoded holds it (masks set apart, so they cannot join pieces).
        #[test]
        fn no_registered_value_survives(
            secrets in proptest::collection::vec("[a-zA-Z0-9@:/ é._~-]{6,24}", 1..4),
            prefix in any::<String>(),
            suffix in any::<String>(),
            pick in any::<prop::sample::Index>(),
            encode in proptest::collection::vec(any::<bool>(), 0..64),
        ) {
            let secret = pick.get(&secrets).clone();
            let redactor = Redactor::new(secrets.clone());
            for shown in [secret.clone(), percent_encode_some(&secret, &encode)] {
                let text = format!("{prefix}{shown}{suffix}");
                let redacted = redactor.redact(&text).replace(MASK, "\u{0}");
                prop_assert!(!redacted.contains(&secret), "{text:?} -> {redacted:?}");
                let decoded = String::from_utf8_lossy(&percent_decode(&redacted).0).into_owned();
                prop_assert!(!decoded.contains(&secret), "{text:?} -> {decoded:?}");
            }
        }

        /// Truncating after redaction never exposes any part of a registered value, and
        /// gives a prefix of the redacted text, within the limit, on a character boundary.
        /// The surrounding text shares no character with the value, so any character of
        /// the value in the output would be a piece of the secret.
        #[test]
        fn truncation_never_exposes_a_fragment(
            secret in "[a-z0-9]{6,40}",
            prefix in "[A-Z !#$%()*,./:;<>?@^é日本]{0,40}",
            suffix in "[A-Z !#$%()*,./:;<>?@^é日本]{0,40}",
            max_bytes in 0usize..120,
        ) {
            let redactor = Redactor::new([secret.clone()]);
            let text = format!("{prefix}{secret}{suffix}");
            let cut = redactor.truncate_redacted(&text, max_bytes);
            prop_assert!(cut.len() <= max_bytes);
            prop_assert!(
                !cut.chars().any(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{text:?} cut to {max_bytes}: {cut:?}"
            );
            let whole = redactor.redact(&text);
            let kept = cut.strip_suffix(ELLIPSIS).unwrap_or(&cut);
            prop_assert!(whole.starts_with(kept));
        }

        /// No registered value survives anywhere in a JSON value, keys included.
        #[test]
        fn no_registered_value_survives_in_json(
            secret in "[a-z0-9_-]{6,24}",
            value in json_values(),
        ) {
            let redactor = Redactor::new([secret.clone()]);
            let planted = plant(&value, &secret);
            let redacted = redactor.redact_json(&planted).to_string();
            prop_assert!(!redacted.contains(&secret), "{planted} -> {redacted}");
        }
    }

    fn json_values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// `value` with `secret` inserted in the middle of every string and key.
    fn plant(value: &Value, secret: &str) -> Value {
        let insert = |text: &str| {
            let middle = text.floor_char_boundary(text.len() / 2);
            format!("{}{secret}{}", &text[..middle], &text[middle..])
        };
        match value {
            Value::String(text) => Value::String(insert(text)),
            Value::Array(items) => Value::Array(items.iter().map(|i| plant(i, secret)).collect()),
            Value::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(key, item)| (insert(key), plant(item, secret)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}
