//! Chain verification: recomputes a plan's hash chain from the stored rows and reports the
//! first seq where it breaks, with the reason.
//!
//! A row is checked in this order: its seq follows the previous one (a missing seq is a
//! deleted row); it lies within the plan's recorded head; its `prev_hash` equals the
//! previous `this_hash` (rows swapped or replaced); its payload hashes to its `this_hash`
//! (an edited payload); its `kind`, `execution_id` and `created_at` columns agree with the
//! hashed payload. After the last row, the chain must end exactly at the plan's head.

use std::borrow::Cow;
use std::fmt;

use proctor_contract::{CanonError, ErrorCode, canonical_json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{EventKind, chain_hash, genesis};

/// The outcome of verifying one plan's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The plan.
    pub plan: String,
    /// How many events were checked and found valid.
    pub verified: u64,
    /// The head recorded for the plan: the seq of its last event.
    pub head_seq: u64,
    /// The head recorded for the plan: the `this_hash` of its last event.
    pub head_hash: String,
    /// The first break, or `None` when the chain is valid.
    pub broken: Option<ChainBreak>,
}

impl ChainReport {
    /// Whether the chain is valid.
    pub fn is_valid(&self) -> bool {
        self.broken.is_none()
    }

    /// `ERR_LEDGER_CHAIN` naming the plan, seq and reason, when the chain is broken.
    pub fn to_error(&self) -> Option<CanonError> {
        self.broken.as_ref().map(|broken| {
            CanonError::new(
                ErrorCode::LedgerChain,
                format!(
                    "plan `{}` at seq {}: {}",
                    self.plan, broken.seq, broken.reason
                ),
            )
        })
    }
}

/// Where and why a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first seq that does not verify.
    pub seq: u64,
    /// Why.
    pub reason: BreakReason,
}

/// Why a chain breaks at a seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum BreakReason {
    /// The seq is missing: the next stored event has a later seq.
    Gap {
        /// The seq found where this one was expected.
        next_stored_seq: u64,
    },
    /// The event lies past the head recorded for the plan.
    BeyondHead {
        /// The plan's recorded head seq.
        head_seq: u64,
    },
    /// `prev_hash` is not the previous event's `this_hash`.
    PrevHashMismatch {
        /// The previous event's `this_hash`.
        expected: String,
        /// The stored `prev_hash`.
        stored: String,
    },
    /// The payload does not hash to the stored `this_hash`.
    PayloadHashMismatch {
        /// `BLAKE3(prev_hash bytes || JCS(payload))`.
        computed: String,
        /// The stored `this_hash`.
        stored: String,
    },
    /// The payload is not a JSON object with string `kind` and `at` fields.
    InvalidPayload {
        /// The parser's complaint.
        error: String,
    },
    /// A column disagrees with the hashed payload.
    ColumnMismatch {
        /// The column: `kind`, `execution_id` or `created_at`.
        column: String,
    },
    /// The kind is not one the ledger knows.
    UnknownKind {
        /// The stored kind.
        kind: String,
    },
    /// The chain ends before the plan's recorded head: events were removed from the tail.
    Truncated {
        /// The plan's recorded head seq.
        head_seq: u64,
    },
    /// The last event's `this_hash` is not the plan's recorded head hash.
    HeadHashMismatch {
        /// The plan's recorded head hash.
        head_hash: String,
    },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Gap { next_stored_seq } => {
                write!(
                    f,
                    "event missing (deleted row): the next stored seq is {next_stored_seq}"
                )
            }
            BreakReason::BeyondHead { head_seq } => {
                write!(
                    f,
                    "event past the plan's recorded head seq {head_seq} (inserted row)"
                )
            }
            BreakReason::PrevHashMismatch { expected, stored } => write!(
                f,
                "prev_hash {stored} is not the previous event's this_hash {expected} \
                 (rows reordered or replaced)"
            ),
            BreakReason::PayloadHashMismatch { computed, stored } => write!(
                f,
                "payload hashes to {computed}, not the stored this_hash {stored} (payload edited)"
            ),
            BreakReason::InvalidPayload { error } => {
                write!(f, "payload is not a valid event: {error}")
            }
            BreakReason::ColumnMismatch { column } => {
                write!(
                    f,
                    "column `{column}` disagrees with the hashed payload (column edited)"
                )
            }
            BreakReason::UnknownKind { kind } => write!(f, "unknown event kind `{kind}`"),
            BreakReason::Truncated { head_seq } => write!(
                f,
                "chain ends here but the plan's recorded head is seq {head_seq} (rows removed)"
            ),
            BreakReason::HeadHashMismatch { head_hash } => write!(
                f,
                "this_hash is not the plan's recorded head hash {head_hash} (head or event replaced)"
            ),
        }
    }
}

/// One stored event row, as read for verification.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub(crate) seq: u64,
    pub(crate) kind: String,
    pub(crate) execution_id: Option<String>,
    pub(crate) payload: String,
    pub(crate) prev_hash: String,
    pub(crate) this_hash: String,
    pub(crate) created_at: String,
}

/// The fields of a payload that columns repeat.
#[derive(Deserialize)]
struct PayloadHeader<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(borrow, default)]
    execution_id: Option<Cow<'a, str>>,
}

/// Walks a chain row by row, in seq order.
pub(crate) struct ChainVerifier {
    head_seq: u64,
    head_hash: String,
    expected_seq: u64,
    running: blake3::Hash,
}

impl ChainVerifier {
    /// A verifier for a plan whose recorded head is (`head_seq`, `head_hash`).
    pub(crate) fn new(head_seq: u64, head_hash: String) -> ChainVerifier {
        ChainVerifier {
            head_seq,
            head_hash,
            expected_seq: 1,
            running: genesis(),
        }
    }

    /// How many rows verified so far.
    pub(crate) fn verified(&self) -> u64 {
        self.expected_seq - 1
    }

    /// Checks the next row.
    pub(crate) fn check(&mut self, row: &StoredRow) -> Result<(), ChainBreak> {
        let seq = self.expected_seq;
        let broken = |reason| Err(ChainBreak { seq, reason });
        if row.seq != seq {
            return broken(BreakReason::Gap {
                next_stored_seq: row.seq,
            });
        }
        if seq > self.head_seq {
            return broken(BreakReason::BeyondHead {
                head_seq: self.head_seq,
            });
        }
        let expected_prev = self.running.to_hex();
        if row.prev_hash != expected_prev.as_str() {
            return broken(BreakReason::PrevHashMismatch {
                expected: expected_prev.to_string(),
                stored: row.prev_hash.clone(),
            });
        }
        let header = match serde_json::from_str::<PayloadHeader<'_>>(&row.payload) {
            Ok(header) => header,
            Err(err) => {
                return broken(BreakReason::InvalidPayload {
                    error: err.to_string(),
                });
            }
        };
        // Fast path: the stored text is the canonical text that was hashed. Otherwise the
        // payload may have been re-encoded without a change of value: hash its JCS form.
        let mut computed = chain_hash(&self.running, &row.payload);
        if computed.to_hex().as_str() != row.this_hash {
            match serde_json::from_str::<Value>(&row.payload) {
                Ok(value) => computed = chain_hash(&self.running, &canonical_json(&value)),
                Err(err) => {
                    return broken(BreakReason::InvalidPayload {
                        error: err.to_string(),
                    });
                }
            }
            if computed.to_hex().as_str() != row.this_hash {
                return broken(BreakReason::PayloadHashMismatch {
                    computed: computed.to_hex().to_string(),
                    stored: row.this_hash.clone(),
                });
            }
        }
        if header.kind != row.kind {
            return broken(BreakReason::ColumnMismatch {
                column: "kind".to_owned(),
            });
        }
        if EventKind::from_wire(&row.kind).is_none() {
            return broken(BreakReason::UnknownKind {
                kind: row.kind.clone(),
            });
        }
        if header.execution_id.as_deref() != row.execution_id.as_deref() {
            return broken(BreakReason::ColumnMismatch {
                column: "execution_id".to_owned(),
            });
        }
        if header.at != row.created_at {
            return broken(BreakReason::ColumnMismatch {
                column: "created_at".to_owned(),
            });
        }
        self.running = computed;
        self.expected_seq += 1;
        Ok(())
    }

    /// Checks that the chain, now fully read, ends at the plan's recorded head.
    pub(crate) fn finish(&self) -> Result<(), ChainBreak> {
        let last = self.expected_seq - 1;
        if last < self.head_seq {
            return Err(ChainBreak {
                seq: self.expected_seq,
                reason: BreakReason::Truncated {
                    head_seq: self.head_seq,
                },
            });
        }
        if self.running.to_hex().as_str() != self.head_hash {
            return Err(ChainBreak {
                seq: last,
                reason: BreakReason::HeadHashMismatch {
                    head_hash: self.head_hash.clone(),
                },
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::clock::Timestamp;
    use crate::event::{GENESIS_HASH, NewEvent, object};

    fn chain(n: u64) -> Vec<StoredRow> {
        let mut prev = genesis();
        (1..=n)
            .map(|seq| {
                let at = Timestamp::now();
                let event = NewEvent::new(
                    EventKind::PredicateCheck,
                    Some("e1"),
                    object(json!({"n": seq})),
                )
                .unwrap();
                let payload = event.payload(&at);
                let this = chain_hash(&prev, &payload);
                let row = StoredRow {
                    seq,
                    kind: "predicate.check".to_owned(),
                    execution_id: Some("e1".to_owned()),
                    payload,
                    prev_hash: prev.to_hex().to_string(),
                    this_hash: this.to_hex().to_string(),
                    created_at: at.into_string(),
                };
                prev = this;
                row
            })
            .collect()
    }

    fn verify(rows: &[StoredRow], head_seq: u64, head_hash: &str) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new(head_seq, head_hash.to_owned());
        for row in rows {
            verifier.check(row)?;
        }
        verifier.finish()?;
        Ok(verifier.verified())
    }

    fn head(rows: &[StoredRow]) -> (u64, String) {
        rows.last().map_or((0, GENESIS_HASH.to_owned()), |r| {
            (r.seq, r.this_hash.clone())
        })
    }

    #[test]
    fn valid_chains_verify() {
        assert_eq!(verify(&[], 0, GENESIS_HASH), Ok(0));
        let rows = chain(5);
        let (seq, hash) = head(&rows);
        assert_eq!(verify(&rows, seq, &hash), Ok(5));
    }

    #[test]
    fn reformatted_payload_with_the_same_value_still_verifies() {
        let mut rows = chain(3);
        let (seq, hash) = head(&rows);
        let value: Value = serde_json::from_str(&rows[1].payload).unwrap();
        rows[1].payload = serde_json::to_string_pretty(&value).unwrap();
        assert_eq!(verify(&rows, seq, &hash), Ok(3));
    }

    #[test]
    fn breaks_are_reported_at_the_first_bad_seq() {
        let rows = chain(6);
        let (seq, hash) = head(&rows);
        let at = |rows: &[StoredRow]| verify(rows, seq, &hash).unwrap_err();

        let mut edited = rows.clone();
        edited[2].payload = edited[2].payload.replace("\"n\":3", "\"n\":33");
        let broken = at(&edited);
        assert_eq!(broken.seq, 3);
        assert!(matches!(
            broken.reason,
            BreakReason::PayloadHashMismatch { .. }
        ));

        let mut deleted = rows.clone();
        deleted.remove(3);
        let broken = at(&deleted);
        assert_eq!(
            (broken.seq, broken.reason),
            (4, BreakReason::Gap { next_stored_seq: 5 })
        );

        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        let broken = at(&swapped);
        assert_eq!(broken.seq, 2);
        assert!(matches!(
            broken.reason,
            BreakReason::PrevHashMismatch { .. }
        ));

        let mut relabeled = rows.clone();
        relabeled[4].kind = "artifact.produce".to_owned();
        let broken = at(&relabeled);
        assert_eq!(broken.seq, 5);
        assert_eq!(
            broken.reason,
            BreakReason::ColumnMismatch {
                column: "kind".to_owned()
            }
        );

        let truncated = &rows[..4];
        let broken = at(truncated);
        assert_eq!(
            (broken.seq, broken.reason),
            (5, BreakReason::Truncated { head_seq: 6 })
        );

        let broken = verify(&rows, 5, &rows[4].this_hash).unwrap_err();
        assert_eq!(
            (broken.seq, broken.reason),
            (6, BreakReason::BeyondHead { head_seq: 5 })
        );

        let mut garbage = rows.clone();
        garbage[0].payload = "not json".to_owned();
        assert!(matches!(
            at(&garbage).reason,
            BreakReason::InvalidPayload { .. }
        ));
    }

    #[test]
    fn broken_reports_become_err_ledger_chain() {
        let report = ChainReport {
            plan: "p".to_owned(),
            verified: 2,
            head_seq: 4,
            head_hash: GENESIS_HASH.to_owned(),
            broken: Some(ChainBreak {
                seq: 3,
                reason: BreakReason::Gap { next_stored_seq: 4 },
            }),
        };
        assert!(!report.is_valid());
        let err = report.to_error().unwrap();
        assert_eq!(err.code(), ErrorCode::LedgerChain);
        assert!(err.message().contains("plan `p` at seq 3: event missing"));
    }
}
