//! Redaction of secrets from any text before it is logged or printed.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What replaces a secret.
const MASK: &str = "[REDACTED]";
/// Secret values shorter than this are not masked verbatim (they would mask common words).
const MIN_SECRET_LEN: usize = 6;

struct Rule {
    pattern: Regex,
    replace: fn(&Captures<'_>) -> String,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: fn(&Captures<'_>) -> String| Rule {
        pattern: Regex::new(pattern).expect("redaction patterns are valid"),
        replace,
    };
    vec![
        // Authorization headers, with or without a scheme.
        rule(
            r#"(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',;]+"#,
            |c| format!("{}{MASK}", &c[1]),
        ),
        // Bearer tokens anywhere.
        rule(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+", |c| {
            format!("{}{MASK}", &c[1])
        }),
        // key=value and "key": "value" pairs whose key names a secret.
        rule(
            r#"(?i)\b((?:api[_-]?key|access[_-]?token|refresh[_-]?token|token|secret|password|passwd|modal[_-]secret|modal[_-]key)["']?\s*[=:]\s*["']?)[^\s"'&,;}]+"#,
            |c| format!("{}{MASK}", &c[1]),
        ),
        // user:password@ in URLs.
        rule(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", |c| {
            format!("{}{MASK}@", &c[1])
        }),
        // sk-… style API keys.
        rule(r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{16,}", |_| MASK.to_owned()),
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

/// Masks secrets in text: known secret values verbatim, plus every pattern that looks like a
/// credential (Authorization values, bearer tokens, `api_key=`/`token=` pairs, URL
/// credentials, `sk-…` keys, long hex and base64 strings).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secret_values: Vec<String>,
}

impl Redactor {
    /// A redactor that also masks the given secret values wherever they appear.
    pub fn new(secret_values: impl IntoIterator<Item = String>) -> Redactor {
        let mut secret_values: Vec<String> = secret_values
            .into_iter()
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secret_values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        secret_values.dedup();
        Redactor { secret_values }
    }

    /// `text` with every secret masked.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secret_values {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        for rule in RULES.iter() {
            if rule.pattern.is_match(&out) {
                out = Cow::Owned(rule.pattern.replace_all(&out, rule.replace).into_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
                "sent bearer eyJhbGciOi.x.y now",
                "sent bearer [REDACTED] now",
            ),
            ("GET /x?api_key=abc123&q=1", "GET /x?api_key=[REDACTED]&q=1"),
            ("token=zzz", "token=[REDACTED]"),
            (r#"{"api_key": "v"}"#, r#"{"api_key": "[REDACTED]"}"#),
            (
                "https://user:pw@example.com/x",
                "https://[REDACTED]@example.com/x",
            ),
            ("key sk-abcdefghijklmnop1234 used", "key [REDACTED] used"),
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
    fn keeps_digests_paths_and_ids() {
        let digest = format!("sha256:{}", "a1".repeat(32));
        let cid = format!("b3:{}", "0f".repeat(32));
        for text in [
            digest.as_str(),
            cid.as_str(),
            "/artifacts/outputs/demo/3f2a9c1e-6a4b-4c1d-9e8f-0123456789ab/outputs.json",
            "execution.settle",
            "mode=mock;ref=llm/litellm@1;secrets=OPENAI_API_KEY",
            "http://127.0.0.1:8000/healthz",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
