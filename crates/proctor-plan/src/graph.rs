//! The plan's graph: cycles, the admission order, and Mermaid and DOT renderings with each
//! transition's state.
//!
//! A graph is a list of `(id, after)` pairs in file order. The admission order is
//! topological and stable: among the transitions that are ready, file order decides.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

/// Where a transition stands, in a report or a rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionState {
    /// Not admitted yet.
    Pending,
    /// Its execution succeeded and passed its success predicates.
    Succeeded,
    /// Skipped: an earlier execution of it still verifies.
    Skipped,
    /// It failed: refused at admission, or its execution or success predicates failed.
    Failed,
    /// Never admitted: downstream of a failure, or the plan stopped.
    NotStarted,
}

impl TransitionState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionState::Pending => "pending",
            TransitionState::Succeeded => "succeeded",
            TransitionState::Skipped => "skipped",
            TransitionState::Failed => "failed",
            TransitionState::NotStarted => "not_started",
        }
    }
}

/// A cycle among `edges`, as the ids along it with the first repeated at the end, or
/// `None`. Every `after` target must be an id of `edges`.
pub fn find_cycle(edges: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let index: HashMap<&str, usize> = edges
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (node, next edge to follow).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let after = &edges[node].1;
            if *next == after.len() {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            }
            let target = index[after[*next].as_str()];
            *next += 1;
            match marks[target] {
                Mark::New => {
                    marks[target] = Mark::OnPath;
                    path.push((target, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|&(n, _)| edges[n].0.clone())
                        .collect();
                    cycle.push(edges[target].0.clone());
                    // Edges point upstream; print the cycle in running order.
                    cycle.reverse();
                    return Some(cycle);
                }
                Mark::Done => {}
            }
        }
    }
    None
}

/// The ids of an acyclic graph in admission order: each after everything it runs after,
/// file order among those ready at once.
pub fn admission_order(edges: &[(String, Vec<String>)]) -> Vec<String> {
    let mut remaining: Vec<usize> = edges.iter().map(|(_, after)| after.len()).collect();
    let index: HashMap<&str, usize> = edges
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); edges.len()];
    for (i, (_, after)) in edges.iter().enumerate() {
        for upstream in after {
            downstream[index[upstream.as_str()]].push(i);
        }
    }
    // Ready transitions, smallest file position first.
    let mut ready: std::collections::BTreeSet<usize> =
        (0..edges.len()).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(edges.len());
    while let Some(next) = ready.pop_first() {
        order.push(edges[next].0.clone());
        for &child in &downstream[next] {
            remaining[child] -= 1;
            if remaining[child] == 0 {
                ready.insert(child);
            }
        }
    }
    order
}

/// A rendering format for `plan graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Renders `edges` (edges point from a transition to those it runs after; the rendering
/// draws them upstream → downstream) with each transition's state from `states`
/// (`pending` when absent).
pub fn render(
    edges: &[(String, Vec<String>)],
    states: &BTreeMap<String, TransitionState>,
    format: GraphFormat,
) -> String {
    let state = |id: &str| {
        states
            .get(id)
            .copied()
            .unwrap_or(TransitionState::Pending)
            .as_str()
    };
    let node = |i: usize| format!("t{i}");
    let index: HashMap<&str, usize> = edges
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for (i, (id, _)) in edges.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {}[\"{}<br/>{}\"]",
                    node(i),
                    mermaid_text(id),
                    state(id)
                );
            }
            for (i, (_, after)) in edges.iter().enumerate() {
                for upstream in after {
                    let _ = writeln!(out, "  {} --> {}", node(index[upstream.as_str()]), node(i));
                }
            }
        }
        GraphFormat::Dot => {
            out.push_str("digraph plan {\n  rankdir=TB;\n");
            for (i, (id, _)) in edges.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  {} [label=\"{}\\n{}\"];",
                    node(i),
                    dot_text(id),
                    state(id)
                );
            }
            for (i, (_, after)) in edges.iter().enumerate() {
                for upstream in after {
                    let _ = writeln!(out, "  {} -> {};", node(index[upstream.as_str()]), node(i));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

/// `text` safe inside a Mermaid quoted label.
fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
}

/// `text` safe inside a DOT quoted string.
fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(pairs: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(id, after)| {
                (
                    (*id).to_owned(),
                    after.iter().map(|a| (*a).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn admission_order_is_topological_and_stable() {
        let edges = graph(&[
            ("c", &["a"]),
            ("a", &[]),
            ("d", &["b", "c"]),
            ("b", &[]),
            ("e", &[]),
        ]);
        assert_eq!(admission_order(&edges), ["a", "c", "b", "d", "e"]);
    }

    #[test]
    fn finds_and_names_a_cycle() {
        let edges = graph(&[("a", &[]), ("b", &["a", "d"]), ("c", &["b"]), ("d", &["c"])]);
        let cycle = find_cycle(&edges).unwrap();
        assert_eq!(cycle.first(), cycle.last());
        let mut members = cycle[..cycle.len() - 1].to_vec();
        members.sort();
        assert_eq!(members, ["b", "c", "d"]);
        // Each step runs before the next.
        for pair in cycle.windows(2) {
            let (_, after) = edges.iter().find(|(id, _)| *id == pair[1]).unwrap();
            assert!(after.contains(&pair[0]), "{cycle:?}");
        }
        assert_eq!(find_cycle(&graph(&[("a", &[]), ("b", &["a"])])), None);
    }

    #[test]
    fn renders_states_in_mermaid_and_dot() {
        let edges = graph(&[("stats", &[]), ("summary", &["stats"])]);
        let states = BTreeMap::from([("stats".to_owned(), TransitionState::Succeeded)]);
        assert_eq!(
            render(&edges, &states, GraphFormat::Mermaid),
            "flowchart TD\n  t0[\"stats<br/>succeeded\"]\n  t1[\"summary<br/>pending\"]\n  t0 --> t1\n"
        );
        assert_eq!(
            render(&edges, &states, GraphFormat::Dot),
            "digraph plan {\n  rankdir=TB;\n  t0 [label=\"stats\\nsucceeded\"];\n  t1 [label=\"summary\\npending\"];\n  t0 -> t1;\n}\n"
        );
    }
}
