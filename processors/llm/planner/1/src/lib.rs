//! llm/planner@1: a planner that asks a language model for a plan. It proposes, in
//! `plan/transitions.json`, transitions that reach a goal using only the processors it is
//! offered.
//!
//! Inputs: `{"schema":"v1","goal":…,"processors":[{"ref":…,"description":…}],
//! "max_transitions":…,"mode":…,"model":…}`. `mode` (default `mock`) is the mode of the
//! proposed transitions: the planner sets it on each, whatever the model wrote.
//! - `mock`: no network. The proposal is canned and byte-stable: one [`MOCK_REF`]
//!   transition, `goal-stats`, over the goal text; [`MOCK_REF`] must be offered.
//! - `real`: `POST {OPENAI_BASE_URL or https://api.openai.com/v1}/chat/completions` with
//!   `Authorization: Bearer $OPENAI_API_KEY` (the settings of `llm/litellm@1`) and `model`
//!   (required), temperature 0, a system prompt asking for the proposal JSON and the goal
//!   with the offered processors as the user message. The answer (optionally in a Markdown
//!   code fence) must be `{"transitions":[…]}` with 1 to `max_transitions` objects whose
//!   `ref` is offered; anything else is `ERR_PROVIDER`. The executor validates the rest.
//!
//! Usage carries `transitions` and, in `real` mode, the endpoint's token counts.

// Unit tests share the dev-dependencies of the integration tests.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// One feature set per dependency across the workspace (.config/hakari.toml).
use proctor_workspace_hack as _;

mod openai;

use std::collections::BTreeSet;

use proctor_contract::{Mode, Usage};
use proctor_sdk::openai::Message;
pub use proctor_sdk::openai::{API_KEY_SECRET, BASE_URL_VAR, DEFAULT_BASE_URL};
use proctor_sdk::{
    Context, ProcessorDefinition, Provider, ProviderError, ProviderFuture, ProviderOutput,
    ProviderResult,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// This processor's ref.
pub const PROCESSOR_REF: &str = "llm/planner@1";
/// The proposal output, relative to `{write_prefix}outputs/`.
pub use proctor_contract::PROPOSAL_OUTPUT;
/// The processor the canned `mock` proposal runs over the goal text.
pub const MOCK_REF: &str = "text/stats@1";
/// The id of the canned `mock` proposal's transition.
pub const MOCK_TRANSITION_ID: &str = "goal-stats";
/// The most transitions a proposal holds when `max_transitions` is not given.
pub const DEFAULT_MAX_TRANSITIONS: usize = 10;

/// The processor: requires `OPENAI_API_KEY` in `real` mode, passes `OPENAI_BASE_URL`
/// through.
pub fn definition() -> ProcessorDefinition {
    let processor_ref = PROCESSOR_REF
        .parse()
        .expect("the processor ref literal is valid");
    ProcessorDefinition::new(processor_ref, Planner)
        .with_required_secrets([API_KEY_SECRET])
        .with_passthrough_env([BASE_URL_VAR])
}

/// The inputs payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inputs {
    schema: String,
    goal: String,
    processors: Vec<Offered>,
    #[serde(default = "default_max_transitions")]
    max_transitions: usize,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    model: Option<String>,
}

fn default_max_transitions() -> usize {
    DEFAULT_MAX_TRANSITIONS
}

/// A processor the planner may use.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Offered {
    #[serde(rename = "ref")]
    processor_ref: String,
    description: String,
}

/// What the model asked for: the proposal and the endpoint's token counts.
#[derive(Debug)]
struct Planned {
    proposal: Value,
    model: String,
    usage: Usage,
}

/// The provider.
struct Planner;

impl Provider for Planner {
    fn run<'a>(&'a self, context: &'a Context, inputs: Value) -> ProviderFuture<'a> {
        Box::pin(plan(context, inputs))
    }
}

async fn plan(context: &Context, inputs: Value) -> Result<ProviderResult, ProviderError> {
    let inputs: Inputs = serde_json::from_value(inputs).map_err(ProviderError::inputs)?;
    check(&inputs)?;
    let planned = match context.mode() {
        Mode::Mock => mock_plan(&inputs)?,
        Mode::Real => {
            let Some(model) = inputs.model.as_deref() else {
                return Err(ProviderError::inputs("real mode needs model"));
            };
            let (answer, usage) = openai::complete(context, model, &messages(&inputs)?).await?;
            let proposal = accept(&answer, &inputs)
                .map_err(|why| ProviderError::failed(context.redactor().redact(&why)))?;
            Planned {
                proposal,
                model: model.to_owned(),
                usage,
            }
        }
    };
    let mut usage = planned.usage;
    let transitions = planned.proposal["transitions"]
        .as_array()
        .map_or(0, Vec::len);
    usage.insert("transitions".to_owned(), transitions as u64);
    Ok(ProviderResult {
        outputs: vec![ProviderOutput::json(PROPOSAL_OUTPUT, &planned.proposal)?],
        processor_info: format!("{PROCESSOR_REF} {} model={}", context.mode(), planned.model),
        usage,
    })
}

/// What the schema says and serde cannot.
fn check(inputs: &Inputs) -> Result<(), ProviderError> {
    if inputs.schema != "v1" {
        return Err(ProviderError::inputs(format!(
            "schema must be `v1`, not `{}`",
            inputs.schema
        )));
    }
    if inputs.goal.trim().is_empty() {
        return Err(ProviderError::inputs("goal is empty"));
    }
    if inputs.processors.is_empty() {
        return Err(ProviderError::inputs("processors offers none"));
    }
    if inputs.max_transitions == 0 {
        return Err(ProviderError::inputs("max_transitions must be at least 1"));
    }
    Ok(())
}

/// The canned proposal: [`MOCK_REF`] over the goal text.
fn mock_plan(inputs: &Inputs) -> Result<Planned, ProviderError> {
    if !inputs
        .processors
        .iter()
        .any(|offered| offered.processor_ref == MOCK_REF)
    {
        return Err(ProviderError::inputs(format!(
            "mock mode proposes {MOCK_REF}, which processors does not offer"
        )));
    }
    let proposal = json!({"transitions": [{
        "id": MOCK_TRANSITION_ID,
        "ref": MOCK_REF,
        "mode": inputs.mode,
        "inputs": {"schema": "v1", "text": inputs.goal},
    }]});
    Ok(Planned {
        proposal,
        model: "mock".to_owned(),
        usage: Usage::new(),
    })
}

/// The system prompt: what a proposal is and the rules it keeps.
const SYSTEM_PROMPT: &str = "You plan work for proctor, which runs processors. Answer with \
one JSON object and nothing else: {\"transitions\": [TRANSITION, ...]}. A TRANSITION is \
{\"id\": ID, \"ref\": REF, \"inputs\": {...}, \"after\": [ID, ...]}: ID is unique and matches \
[a-z0-9][a-z0-9_-]{0,63}; REF is one of the offered processors' refs, exactly; inputs is the \
processor's inputs object and starts with \"schema\": \"v1\"; after (optional) lists the \
transitions that must finish first. An input value may be {\"$from\": \"ID:outputs/PATH\"}: \
the text of an output of an earlier transition, which implies after. Use at most \
max_transitions transitions and only the offered processors.";

/// The chat messages: the system prompt, then the goal and the offer as JSON.
fn messages(inputs: &Inputs) -> Result<Vec<Message>, ProviderError> {
    let request = json!({
        "goal": inputs.goal,
        "processors": inputs.processors,
        "max_transitions": inputs.max_transitions,
    });
    let request = serde_json::to_string_pretty(&request)
        .map_err(|e| ProviderError::failed(format!("cannot serialize the request: {e}")))?;
    Ok(vec![
        Message::new("system", SYSTEM_PROMPT),
        Message::new("user", request),
    ])
}

/// The model's answer as a proposal: `{"transitions":[…]}`, 1 to `max_transitions` objects
/// with an offered `ref`, each given the inputs' `mode`. The error says what is wrong.
fn accept(answer: &str, inputs: &Inputs) -> Result<Value, String> {
    let text = without_code_fence(answer);
    let proposal: Value =
        serde_json::from_str(text).map_err(|e| format!("the model's answer is not JSON: {e}"))?;
    let Value::Object(mut proposal) = proposal else {
        return Err("the model's answer is not a JSON object".to_owned());
    };
    let Some(Value::Array(transitions)) = proposal.remove("transitions") else {
        return Err("the model's answer has no transitions array".to_owned());
    };
    if let Some(extra) = proposal.keys().next() {
        return Err(format!("the model's answer has an unknown field `{extra}`"));
    }
    if transitions.is_empty() || transitions.len() > inputs.max_transitions {
        return Err(format!(
            "the model proposed {} transitions; from 1 to {} are allowed",
            transitions.len(),
            inputs.max_transitions
        ));
    }
    let offered: BTreeSet<&str> = inputs
        .processors
        .iter()
        .map(|offered| offered.processor_ref.as_str())
        .collect();
    let mode = json!(inputs.mode);
    let transitions = transitions
        .into_iter()
        .enumerate()
        .map(|(index, transition)| {
            let Value::Object(mut transition) = transition else {
                return Err(format!("transitions[{index}] is not an object"));
            };
            match transition.get("ref") {
                Some(Value::String(r)) if offered.contains(r.as_str()) => {}
                Some(Value::String(r)) => {
                    return Err(format!(
                        "transitions[{index}] uses `{r}`, which was not offered"
                    ));
                }
                _ => return Err(format!("transitions[{index}] has no ref")),
            }
            transition.insert("mode".to_owned(), mode.clone());
            Ok(Value::Object(transition))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut accepted = Map::new();
    accepted.insert("transitions".to_owned(), Value::Array(transitions));
    Ok(Value::Object(accepted))
}

/// The text inside a Markdown code fence (```` ```json … ``` ````), or the answer itself.
fn without_code_fence(answer: &str) -> &str {
    let trimmed = answer.trim();
    trimmed
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
        .map_or(trimmed, |fenced| {
            fenced
                .split_once('\n')
                .map_or(fenced, |(_language, body)| body)
                .trim()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(max_transitions: usize) -> Inputs {
        Inputs {
            schema: "v1".to_owned(),
            goal: "Count the words.".to_owned(),
            processors: vec![
                Offered {
                    processor_ref: "text/stats@1".to_owned(),
                    description: "counts".to_owned(),
                },
                Offered {
                    processor_ref: "json/merge@1".to_owned(),
                    description: "merges".to_owned(),
                },
            ],
            max_transitions,
            mode: Mode::Mock,
            model: None,
        }
    }

    #[test]
    fn an_answer_is_accepted_with_the_inputs_mode_on_each_transition() {
        let answer = r#"```json
{"transitions": [{"id": "a", "ref": "text/stats@1", "mode": "real", "inputs": {"schema": "v1", "text": "x"}},
                 {"id": "b", "ref": "json/merge@1", "after": ["a"], "inputs": {"schema": "v1", "documents": [{"$from": "a:outputs/stats.json"}]}}]}
```"#;
        let proposal = accept(answer, &inputs(2)).unwrap();
        assert_eq!(proposal["transitions"][0]["mode"], "mock");
        assert_eq!(proposal["transitions"][1]["mode"], "mock");
        assert_eq!(proposal["transitions"][1]["after"], json!(["a"]));
        let bare = r#"{"transitions": [{"id": "a", "ref": "text/stats@1"}]}"#;
        assert_eq!(
            accept(bare, &inputs(1)).unwrap(),
            json!({"transitions": [{"id": "a", "ref": "text/stats@1", "mode": "mock"}]})
        );
    }

    #[test]
    fn an_answer_that_is_not_a_proposal_says_why() {
        let one = r#"{"id": "a", "ref": "text/stats@1"}"#;
        for (answer, why) in [
            ("I would count the words.", "is not JSON"),
            ("[]", "is not a JSON object"),
            ("{\"plan\": []}", "has no transitions array"),
            (
                &format!("{{\"transitions\": [{one}], \"note\": 1}}") as &str,
                "unknown field `note`",
            ),
            (
                "{\"transitions\": []}",
                "proposed 0 transitions; from 1 to 2",
            ),
            (
                &format!("{{\"transitions\": [{one}, {one}, {one}]}}"),
                "proposed 3 transitions",
            ),
            ("{\"transitions\": [1]}", "transitions[0] is not an object"),
            (
                "{\"transitions\": [{\"id\": \"a\"}]}",
                "transitions[0] has no ref",
            ),
            (
                "{\"transitions\": [{\"id\": \"a\", \"ref\": \"llm/litellm@1\"}]}",
                "transitions[0] uses `llm/litellm@1`, which was not offered",
            ),
        ] {
            let err = accept(answer, &inputs(2)).unwrap_err();
            assert!(err.contains(why), "{answer}: {err} should say {why}");
        }
    }

    #[test]
    fn code_fences_are_optional() {
        assert_eq!(without_code_fence(" {} "), "{}");
        assert_eq!(without_code_fence("```json\n{}\n```"), "{}");
        assert_eq!(without_code_fence("```\n{}\n```\n"), "{}");
        assert_eq!(without_code_fence("```{}```"), "{}");
    }
}
