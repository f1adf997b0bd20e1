//! The planners and their merge processor, `proctor run --build` in mock mode on the Docker
//! engine: `plan/map@1` and `llm/planner@1` write a proposal in the plan file's transition
//! shape, `json/merge@1` merges JSON texts. Each container carries a [`ContainerSweep`]
//! label; none may outlive its run.

use std::collections::BTreeSet;

use proctor_contract::{OutputsIndex, ProcessorRef, cid};
use serde_json::{Value, json};

use crate::engine::ContainerSweep;
use crate::local_adapter::smoke_inputs;
use crate::util::{Run, TestDir, mock_build_run_args, workspace_registry};

/// A mock `--build` run of a workspace processor with `inputs`, printing one JSON envelope.
fn mock_run(dir: &TestDir, sweep: &ContainerSweep, processor_ref: &str, inputs: &str) -> Run {
    let root = workspace_registry().display().to_string();
    let options = sweep.adapter_options();
    let mut args = mock_build_run_args(
        processor_ref,
        &root,
        "/artifacts/outputs/planners/{execution_id}",
        inputs,
    );
    args.extend(["--adapter-opts-json", &options, "--json"]);
    let run = dir.proctor(&args).run();
    run.exits(0);
    run.check(
        sweep.containers().is_empty(),
        "no container may be left after the run",
    );
    run
}

/// The one output of a successful run, read from the World after checking the index and
/// its CID: `(path below outputs/, bytes)`.
fn only_output(dir: &TestDir, run: &Run) -> (String, Vec<u8>) {
    let envelope = run.json();
    let index_path = envelope["index_path"].as_str().unwrap();
    let world = |path: &str| {
        dir.path()
            .join("artifacts")
            .join(&path["/artifacts/".len()..])
    };
    let index = OutputsIndex::from_bytes(&std::fs::read(world(index_path)).unwrap()).unwrap();
    run.check(index.outputs.len() == 1, "one output");
    let output = &index.outputs[0];
    let bytes = std::fs::read(world(output.path.as_str())).unwrap();
    run.check(cid(&bytes) == output.cid, "the output matches its cid");
    let outputs_dir = index_path.replace("outputs.json", "outputs/");
    let below = output.path.as_str().strip_prefix(&outputs_dir).unwrap();
    (below.to_owned(), bytes)
}

/// The proposal's transitions, checked against the plan file's transition shape: ids unique
/// and `[a-z0-9][a-z0-9_-]{0,63}`, a valid ref, a mode, object inputs, and `after` and
/// `$from` naming transitions of the proposal.
fn checked_transitions(run: &Run, bytes: &[u8]) -> Vec<Value> {
    let proposal: Value = serde_json::from_slice(bytes).unwrap();
    let keys: Vec<&String> = proposal.as_object().unwrap().keys().collect();
    run.check(keys == ["transitions"], "a proposal holds transitions only");
    let transitions = proposal["transitions"].as_array().unwrap().clone();
    let mut ids = BTreeSet::new();
    for transition in &transitions {
        let id = transition["id"].as_str().unwrap();
        let id_ok = id.len() <= 64
            && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        run.check(id_ok && ids.insert(id.to_owned()), "a unique transition id");
        let allowed = ["id", "ref", "mode", "after", "inputs"];
        run.check(
            transition
                .as_object()
                .unwrap()
                .keys()
                .all(|key| allowed.contains(&key.as_str())),
            "only transition fields",
        );
        let processor_ref = transition["ref"].as_str().unwrap();
        run.check(processor_ref.parse::<ProcessorRef>().is_ok(), "a valid ref");
        run.check(transition["mode"] == "mock", "the mode asked for");
        run.check(transition["inputs"]["schema"] == "v1", "object inputs");
    }
    for transition in &transitions {
        let after = transition["after"].as_array().cloned().unwrap_or_default();
        let from = references(&transition["inputs"]);
        for upstream in after
            .iter()
            .map(|id| id.as_str().unwrap().to_owned())
            .chain(from)
        {
            run.check(ids.contains(&upstream), "dependencies are proposal-local");
        }
    }
    transitions
}

/// The transition ids the `$from` references in `value` name.
fn references(value: &Value) -> Vec<String> {
    match value {
        Value::Object(object) => match object.get("$from") {
            Some(Value::String(from)) => vec![from.split_once(':').unwrap().0.to_owned()],
            _ => object.values().flat_map(references).collect(),
        },
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn plan_map_proposes_a_transition_per_chunk_and_a_merge() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let inputs: Value = serde_json::from_str(&smoke_inputs(&dir, "plan/map@1")).unwrap();
    let run = mock_run(&dir, &sweep, "plan/map@1", &inputs.to_string());
    let (path, bytes) = only_output(&dir, &run);
    run.check(path == "plan/transitions.json", "the proposal output");
    let transitions = checked_transitions(&run, &bytes);
    let (merge, chunks) = transitions.split_last().unwrap();
    run.check(chunks.len() > 1, "the smoke text makes several chunks");
    let text: String = chunks
        .iter()
        .map(|chunk| chunk["inputs"]["text"].as_str().unwrap())
        .collect();
    run.check(text == inputs["text"], "the chunks rebuild the text");
    run.check(
        chunks.iter().all(|chunk| chunk["ref"] == "text/stats@1"),
        "chunks run text/stats@1",
    );
    let chunk_ids: Vec<&Value> = chunks.iter().map(|chunk| &chunk["id"]).collect();
    run.check(
        merge["ref"] == "json/merge@1" && merge["after"] == json!(chunk_ids),
        "merge runs after every chunk",
    );
    let documents: Vec<Value> = chunk_ids
        .iter()
        .map(|id| json!({"$from": format!("{}:outputs/stats.json", id.as_str().unwrap())}))
        .collect();
    run.check(
        merge["inputs"]["documents"] == json!(documents),
        "merge reads each chunk's stats.json, in order",
    );
}

#[test]
fn llm_planner_in_mock_mode_proposes_its_canned_plan_byte_stably() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let inputs = smoke_inputs(&dir, "llm/planner@1");
    let first = mock_run(&dir, &sweep, "llm/planner@1", &inputs);
    let second = mock_run(&dir, &sweep, "llm/planner@1", &inputs);
    let (path, bytes) = only_output(&dir, &first);
    first.check(path == "plan/transitions.json", "the proposal output");
    first.check(
        only_output(&dir, &second).1 == bytes,
        "mock proposals are byte-stable",
    );
    let transitions = checked_transitions(&first, &bytes);
    let goal = serde_json::from_str::<Value>(&inputs).unwrap()["goal"].clone();
    first.check(
        transitions
            == [json!({
                "id": "goal-stats", "ref": "text/stats@1", "mode": "mock",
                "inputs": {"schema": "v1", "text": goal},
            })],
        "one text/stats@1 transition over the goal",
    );
}

#[test]
fn json_merge_merges_upstream_outputs_in_order() {
    let sweep = ContainerSweep::new();
    let dir = TestDir::new();
    let first = json!({"words": 3, "top_words": [{"word": "the", "count": 2}]});
    let second = json!({"words": 5, "top_words": []});
    let inputs = json!({"schema": "v1", "documents": [first.to_string(), second.to_string()]});
    let run = mock_run(&dir, &sweep, "json/merge@1", &inputs.to_string());
    let (path, bytes) = only_output(&dir, &run);
    run.check(path == "merged.json", "the merged output");
    let merged: Value = serde_json::from_slice(&bytes).unwrap();
    run.check(
        merged == json!({"documents": [first, second]}),
        "the documents, parsed, in order",
    );
}
