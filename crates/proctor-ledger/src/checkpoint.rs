//! Signed checkpoints: the heads of every plan's chain, signed with an Ed25519 key kept
//! outside the database, as transparency logs sign their tree heads.
//!
//! A hash chain shows that no row was changed *unless the whole tail was recomputed*: anyone
//! who can write the database can rewrite a chain from some event on, rehash every later
//! event and move the plan's head, and [`Ledger::verify_chain`] sees a valid chain. A
//! checkpoint closes that gap. [`Ledger::checkpoint`] verifies every chain, then signs a
//! [`CheckpointStatement`] — each plan's head seq and hash, in the canonical JSON of RFC 8785 —
//! and appends it, with its signature and key id, to the `checkpoints` table.
//! [`Ledger::verify_checkpoint`] checks the latest checkpoint's signature with the public key
//! and then that each checkpointed plan still has, at its checkpointed seq, exactly the
//! checkpointed hash. The chain may grow after a checkpoint; it may not be rewritten,
//! truncated or removed. Since each `this_hash` covers every event before it, a valid chain
//! whose event at the checkpointed seq has the checkpointed hash has kept its whole prefix.
//!
//! The checkpoints live in the ledger, so anyone holding the ledger and the public key can
//! verify, and a writer without the private key cannot forge one. Deleting every checkpoint
//! is noticed (verification with a public key requires one). Deleting only the newest
//! checkpoints rolls verification back to an older one; an operator who must rule that out
//! keeps the output of `proctor ledger checkpoint --json` (the signed checkpoint) elsewhere
//! and compares its seq with the one verification reports.
//!
//! Keys are files in the formats OpenSSL reads and writes: the private key PKCS#8 PEM
//! (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey -algorithm ed25519` writes), the
//! public key SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`). A private key file
//! that its group or others may read is refused.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
    spki::der::pem::LineEnding,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use proctor_contract::{CanonError, ErrorCode, canonical_json};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::clock::Timestamp;
use crate::error::{LedgerError, Result};
use crate::event::GENESIS_HASH;
use crate::ledger::{Ledger, from_db, to_db};
use crate::verify::ChainReport;

/// The `format` of every checkpoint statement this version writes and reads.
pub const CHECKPOINT_FORMAT: &str = "proctor.ledger.checkpoint/v1";
/// How many hex characters of a public key's BLAKE3 digest make its key id.
const KEY_ID_HEX_LEN: usize = 32;
/// The largest key file read, in bytes; PEM keys are a few hundred.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

/// The Ed25519 private key that signs checkpoints, read from a file outside the database.
pub struct CheckpointSigningKey {
    key: SigningKey,
}

impl fmt::Debug for CheckpointSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigningKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigningKey {
    /// Reads a PKCS#8 PEM private key from `path`. A file its group or others may read
    /// (any of mode `0o077`), or one that is not an Ed25519 PKCS#8 PEM key, is `ERR_LEDGER`.
    pub fn read(path: &Path) -> Result<CheckpointSigningKey> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| {
            LedgerError::ledger(format!("cannot read the signing key {shown}: {e}"))
        })?;
        let metadata = file.metadata().map_err(|e| {
            LedgerError::ledger(format!("cannot read the signing key {shown}: {e}"))
        })?;
        let mode = metadata.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LedgerError::ledger(format!(
                "the signing key {shown} has mode {mode:04o}, readable by its group or others; \
                 `chmod 600 {shown}` before signing with it"
            )));
        }
        let pem = read_limited(file, path, "signing key")?;
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
            LedgerError::ledger(format!(
                "the signing key {shown} is not an Ed25519 PKCS#8 PEM private key: {e}"
            ))
        })?;
        Ok(CheckpointSigningKey { key })
    }

    /// Creates a new key pair: the private key at `private_path` (PKCS#8 PEM, mode 0600,
    /// never over an existing file) and the public key beside it at `PATH.pub` (SPKI PEM).
    /// Returns the signing key; nothing is left behind when either write fails.
    pub fn generate(private_path: &Path) -> Result<CheckpointSigningKey> {
        let mut seed = [0_u8; ed25519_dalek::SECRET_KEY_LENGTH];
        getrandom::fill(&mut seed).map_err(|e| {
            LedgerError::ledger(format!("no randomness for a new signing key: {e}"))
        })?;
        let signing = CheckpointSigningKey {
            key: SigningKey::from_bytes(&seed),
        };
        let private_pem = signing
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| LedgerError::ledger(format!("cannot encode the signing key: {e}")))?;
        let public_path = public_key_path(private_path);
        write_new(private_path, private_pem.as_bytes(), 0o600)?;
        if let Err(error) = write_new(
            &public_path,
            signing.public_key().to_pem().as_bytes(),
            0o644,
        ) {
            let _ = std::fs::remove_file(private_path);
            return Err(error);
        }
        Ok(signing)
    }

    /// The public half.
    pub fn public_key(&self) -> CheckpointPublicKey {
        CheckpointPublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// The signature (hex) of the canonical JSON of `statement`.
    fn sign(&self, statement: &CheckpointStatement) -> Result<String> {
        let signed = statement_bytes(statement)?;
        Ok(hex::encode(self.key.sign(signed.as_bytes()).to_bytes()))
    }
}

/// Where [`CheckpointSigningKey::generate`] writes the public key of `private_path`:
/// the same path with `.pub` appended.
pub fn public_key_path(private_path: &Path) -> PathBuf {
    let mut name = private_path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The Ed25519 public key that checks checkpoint signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPublicKey {
    key: VerifyingKey,
}

impl CheckpointPublicKey {
    /// The key from `path_or_pem`: SPKI PEM text itself (starting `-----BEGIN PUBLIC
    /// KEY-----`), or the path of a file holding it. Anything else is `ERR_LEDGER`.
    pub fn parse(path_or_pem: &str) -> Result<CheckpointPublicKey> {
        let (pem, source) = if path_or_pem.trim_start().starts_with("-----BEGIN") {
            (path_or_pem.to_owned(), "the public key given".to_owned())
        } else {
            let path = Path::new(path_or_pem);
            let file = File::open(path).map_err(|e| {
                LedgerError::ledger(format!(
                    "cannot read the public key file {}: {e}",
                    path.display()
                ))
            })?;
            (
                read_limited(file, path, "public key")?,
                format!("the public key file {}", path.display()),
            )
        };
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            LedgerError::ledger(format!(
                "{source} is not an Ed25519 SPKI PEM public key: {e}"
            ))
        })?;
        Ok(CheckpointPublicKey { key })
    }

    /// The key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), ending in a newline.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|_| unreachable!("an Ed25519 public key always encodes"))
    }

    /// The key's id: the first 32 hex characters of the BLAKE3 digest of its 32 bytes.
    pub fn key_id(&self) -> String {
        let digest = blake3::hash(self.key.as_bytes()).to_hex();
        digest[..KEY_ID_HEX_LEN].to_owned()
    }

    /// Whether `signature` (hex) signs the canonical JSON of `statement`.
    fn verifies(&self, statement: &CheckpointStatement, signature: &str) -> Result<bool> {
        let Some(signature) = hex::decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
        else {
            return Ok(false);
        };
        let signed = statement_bytes(statement)?;
        Ok(self
            .key
            .verify_strict(signed.as_bytes(), &signature)
            .is_ok())
    }
}

/// What a checkpoint signs: the head of every plan's chain at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointStatement {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// When it was made (UTC RFC 3339 with milliseconds).
    pub created_at: String,
    /// The id of the key that signs it, so a statement cannot be passed off under another key.
    pub key_id: String,
    /// Every plan's head, in plan order.
    pub heads: Vec<ChainHead>,
}

/// A plan's chain head: its last seq and that event's `this_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// The plan.
    pub plan: String,
    /// The seq of its last event (0 for a plan with no events).
    pub seq: u64,
    /// That event's `this_hash` ([`crate::GENESIS_HASH`] for a plan with no events).
    pub hash: String,
}

/// A checkpoint as stored: its number, the statement and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    /// Its number in the `checkpoints` table, from 1.
    pub seq: u64,
    /// What was signed.
    pub statement: CheckpointStatement,
    /// The Ed25519 signature of the statement's canonical JSON, hex.
    pub signature: String,
}

/// The outcome of checking the ledger against its latest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointReport {
    /// The latest checkpoint's seq, or `None` when there is none.
    pub seq: Option<u64>,
    /// When the latest checkpoint was made.
    pub created_at: Option<String>,
    /// The id of the public key checked with.
    pub key_id: String,
    /// Why the checkpoint itself cannot be trusted, if it cannot.
    pub problem: Option<CheckpointProblem>,
    /// The checkpointed heads that were checked (those of the plan asked for, or all); empty
    /// when the checkpoint has a problem.
    pub heads: Vec<HeadCheck>,
}

impl CheckpointReport {
    /// Whether the checkpoint is signed by the key and every checked head is still in place.
    pub fn is_valid(&self) -> bool {
        self.problem.is_none() && self.heads.iter().all(|head| head.mismatch.is_none())
    }

    /// `ERR_LEDGER_CHAIN` naming the problem with the checkpoint, or the first plan whose
    /// chain no longer holds its checkpointed head.
    pub fn to_error(&self) -> Option<CanonError> {
        if let Some(problem) = &self.problem {
            return Some(CanonError::new(ErrorCode::LedgerChain, problem.to_string()));
        }
        let seq = self.seq.unwrap_or_default();
        self.heads.iter().find_map(|head| {
            let mismatch = head.mismatch.as_ref()?;
            Some(CanonError::new(
                ErrorCode::LedgerChain,
                format!(
                    "plan `{}` at seq {}: {mismatch} (checkpoint {seq})",
                    head.plan, head.seq
                ),
            ))
        })
    }
}

/// Why a checkpoint cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum CheckpointProblem {
    /// The ledger holds no checkpoint.
    Missing,
    /// The latest checkpoint names another key.
    OtherKey {
        /// The key id the checkpoint names.
        signed_by: String,
    },
    /// The signature does not verify with the key.
    BadSignature {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// The stored statement is not a statement this version reads.
    Malformed {
        /// The checkpoint's seq.
        seq: u64,
        /// What is wrong.
        error: String,
    },
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::Missing => write!(
                f,
                "the ledger holds no checkpoint to verify with the public key; \
                 `proctor ledger checkpoint` makes one (checkpoints deleted?)"
            ),
            CheckpointProblem::OtherKey { signed_by } => write!(
                f,
                "the latest checkpoint is signed by key {signed_by}, not by the public key given \
                 (wrong key, or a forged checkpoint)"
            ),
            CheckpointProblem::BadSignature { seq } => write!(
                f,
                "checkpoint {seq} has a bad signature: its statement or signature was changed"
            ),
            CheckpointProblem::Malformed { seq, error } => {
                write!(f, "checkpoint {seq} is not a valid checkpoint: {error}")
            }
        }
    }
}

/// One checkpointed head, checked against the chain as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeadCheck {
    /// The plan.
    pub plan: String,
    /// The checkpointed seq.
    pub seq: u64,
    /// The checkpointed hash.
    pub hash: String,
    /// How the chain differs, or `None` when it still holds the head.
    pub mismatch: Option<HeadMismatch>,
}

/// How a chain no longer holds its checkpointed head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mismatch", rename_all = "snake_case")]
pub enum HeadMismatch {
    /// The plan is gone.
    PlanRemoved,
    /// The chain's head is now before the checkpointed seq.
    Truncated {
        /// The plan's head seq now.
        head_seq: u64,
    },
    /// No event is stored at the checkpointed seq, though the head lies past it.
    EventMissing,
    /// The event at the checkpointed seq has another `this_hash`.
    Rewritten {
        /// The stored `this_hash`.
        this_hash: String,
    },
}

impl fmt::Display for HeadMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadMismatch::PlanRemoved => write!(f, "the checkpointed plan was removed"),
            HeadMismatch::Truncated { head_seq } => write!(
                f,
                "the chain now ends at seq {head_seq}, before its checkpointed head (truncated)"
            ),
            HeadMismatch::EventMissing => {
                write!(f, "the checkpointed event is missing (deleted row)")
            }
            HeadMismatch::Rewritten { this_hash } => write!(
                f,
                "this_hash is {this_hash}, not the checkpointed head (chain rewritten)"
            ),
        }
    }
}

impl Ledger {
    /// Verifies every chain and, when all are valid and agree with their tables, signs their
    /// heads with `key` and appends the checkpoint to the `checkpoints` table. A broken chain
    /// is `ERR_LEDGER_CHAIN`: a checkpoint never vouches for one.
    pub async fn checkpoint(&self, key: &CheckpointSigningKey) -> Result<SignedCheckpoint> {
        let reports = self.verify_all().await?;
        if let Some(error) = reports.iter().find_map(ChainReport::to_error) {
            return Err(error.into());
        }
        let statement = CheckpointStatement {
            format: CHECKPOINT_FORMAT.to_owned(),
            created_at: Timestamp::now().into_string(),
            key_id: key.public_key().key_id(),
            heads: reports
                .into_iter()
                .map(|report| ChainHead {
                    plan: report.plan,
                    seq: report.head_seq,
                    hash: report.head_hash,
                })
                .collect(),
        };
        let signature = key.sign(&statement)?;
        let text = statement_bytes(&statement)?;
        let seq = self
            .retrying(|| async {
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO checkpoints (seq, created_at, key_id, statement, signature) \
                     SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM checkpoints \
                     RETURNING seq",
                )
                .bind(&statement.created_at)
                .bind(&statement.key_id)
                .bind(&text)
                .bind(&signature)
                .fetch_one(self.pool())
                .await
                .map_err(|e| LedgerError::database("appending a checkpoint", e))?;
                from_db(Ok(seq), "checkpoints.seq")
            })
            .await?;
        tracing::info!(
            event = "ledger.checkpoint",
            seq,
            plans = statement.heads.len(),
            key_id = %statement.key_id
        );
        Ok(SignedCheckpoint {
            seq,
            statement,
            signature,
        })
    }

    /// Checks the latest checkpoint's signature with `key`, then that each checkpointed
    /// plan (only `plan`, when given) still holds its checkpointed head. Problems are
    /// reported, not returned as errors; a database failure is `ERR_LEDGER`.
    pub async fn verify_checkpoint(
        &self,
        key: &CheckpointPublicKey,
        plan: Option<&str>,
    ) -> Result<CheckpointReport> {
        let mut report = CheckpointReport {
            seq: None,
            created_at: None,
            key_id: key.key_id(),
            problem: None,
            heads: Vec::new(),
        };
        let latest = sqlx::query(
            "SELECT seq, created_at, key_id, statement, signature FROM checkpoints \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(|e| LedgerError::database("reading the latest checkpoint", e))?;
        let Some(latest) = latest else {
            report.problem = Some(CheckpointProblem::Missing);
            return Ok(report);
        };
        let seq = from_db(latest.try_get("seq"), "checkpoints.seq")?;
        let column = |name: &str| -> Result<String> {
            latest
                .try_get(name)
                .map_err(|e| LedgerError::database(format!("reading checkpoints.{name}"), e))
        };
        report.seq = Some(seq);
        report.created_at = Some(column("created_at")?);
        let signed_by = column("key_id")?;
        if signed_by != report.key_id {
            report.problem = Some(CheckpointProblem::OtherKey { signed_by });
            return Ok(report);
        }
        let statement = match parse_statement(&column("statement")?) {
            Ok(statement) => statement,
            Err(error) => {
                report.problem = Some(CheckpointProblem::Malformed { seq, error });
                return Ok(report);
            }
        };
        if !key.verifies(&statement, &column("signature")?)? {
            report.problem = Some(CheckpointProblem::BadSignature { seq });
            return Ok(report);
        }
        if statement.key_id != signed_by {
            report.problem = Some(CheckpointProblem::OtherKey {
                signed_by: statement.key_id,
            });
            return Ok(report);
        }
        for head in statement.heads {
            if plan.is_some_and(|plan| plan != head.plan) {
                continue;
            }
            let mismatch = self.head_mismatch(&head).await?;
            report.heads.push(HeadCheck {
                plan: head.plan,
                seq: head.seq,
                hash: head.hash,
                mismatch,
            });
        }
        Ok(report)
    }

    /// How `head`'s plan differs from it now, in one read.
    async fn head_mismatch(&self, head: &ChainHead) -> Result<Option<HeadMismatch>> {
        let row = sqlx::query(
            "SELECT p.head_seq, e.this_hash FROM plans p \
             LEFT JOIN events e ON e.plan = p.key AND e.seq = $2 WHERE p.key = $1",
        )
        .bind(&head.plan)
        .bind(to_db(head.seq)?)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| LedgerError::database(format!("reading the head of `{}`", head.plan), e))?;
        let Some(row) = row else {
            return Ok(Some(HeadMismatch::PlanRemoved));
        };
        let head_seq = from_db(row.try_get("head_seq"), "plans.head_seq")?;
        let this_hash: Option<String> = row
            .try_get("this_hash")
            .map_err(|e| LedgerError::database("reading events.this_hash", e))?;
        let this_hash = match (head.seq, this_hash) {
            (0, _) => GENESIS_HASH.to_owned(),
            (_, Some(hash)) => hash,
            (_, None) if head_seq < head.seq => {
                return Ok(Some(HeadMismatch::Truncated { head_seq }));
            }
            (_, None) => return Ok(Some(HeadMismatch::EventMissing)),
        };
        Ok((this_hash != head.hash).then_some(HeadMismatch::Rewritten { this_hash }))
    }
}

/// The bytes a signature covers: the statement's canonical JSON (RFC 8785).
fn statement_bytes(statement: &CheckpointStatement) -> Result<String> {
    let value = serde_json::to_value(statement)
        .map_err(|e| LedgerError::ledger(format!("cannot encode a checkpoint statement: {e}")))?;
    Ok(canonical_json(&value))
}

/// A stored statement, which must be of [`CHECKPOINT_FORMAT`].
fn parse_statement(text: &str) -> std::result::Result<CheckpointStatement, String> {
    let statement: CheckpointStatement = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if statement.format != CHECKPOINT_FORMAT {
        return Err(format!(
            "format `{}` is not `{CHECKPOINT_FORMAT}`",
            statement.format
        ));
    }
    Ok(statement)
}

/// The text of a key file, at most [`MAX_KEY_FILE_BYTES`].
fn read_limited(file: File, path: &Path, what: &str) -> Result<String> {
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            LedgerError::ledger(format!("cannot read the {what} {}: {e}", path.display()))
        })?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(LedgerError::ledger(format!(
            "the {what} {} is larger than {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Writes `bytes` to a new file at `path` with `mode`, synced; refuses an existing file and
/// removes a file it could not finish.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let failed =
        |e: std::io::Error| LedgerError::ledger(format!("cannot write {}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    if let Err(error) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(failed(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn statement(key: &CheckpointSigningKey) -> CheckpointStatement {
        CheckpointStatement {
            format: CHECKPOINT_FORMAT.to_owned(),
            created_at: "2026-01-02T03:04:05.678Z".to_owned(),
            key_id: key.public_key().key_id(),
            heads: vec![ChainHead {
                plan: "p".to_owned(),
                seq: 3,
                hash: "ab".repeat(32),
            }],
        }
    }

    #[test]
    fn generated_keys_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        let key = CheckpointSigningKey::generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let private = std::fs::read_to_string(&path).unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{private}"
        );

        let read = CheckpointSigningKey::read(&path).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        let public_path = public_key_path(&path);
        assert!(public_path.ends_with("signing.pem.pub"));
        let public = CheckpointPublicKey::parse(public_path.to_str().unwrap()).unwrap();
        assert_eq!(public, key.public_key());
        let inline = CheckpointPublicKey::parse(&key.public_key().to_pem()).unwrap();
        assert_eq!(inline.key_id(), public.key_id());
        assert_eq!(public.key_id().len(), KEY_ID_HEX_LEN);

        let statement = statement(&key);
        let signature = key.sign(&statement).unwrap();
        assert!(public.verifies(&statement, &signature).unwrap());
        let mut changed = statement.clone();
        changed.heads[0].seq = 4;
        assert!(!public.verifies(&changed, &signature).unwrap());
        assert!(!public.verifies(&statement, "zz").unwrap());
        let other = CheckpointSigningKey::generate(&dir.path().join("other.pem")).unwrap();
        assert!(!other.public_key().verifies(&statement, &signature).unwrap());

        let existing = CheckpointSigningKey::generate(&path).unwrap_err();
        assert!(existing.to_string().contains("File exists"), "{existing}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), private);
    }

    #[test]
    fn readable_private_keys_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pem");
        CheckpointSigningKey::generate(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CheckpointSigningKey::read(&path).unwrap_err().to_canon();
        assert_eq!(err.code(), ErrorCode::Ledger);
        assert!(err.message().contains("has mode 0644"), "{err}");

        let public_path = public_key_path(&path);
        std::fs::set_permissions(&public_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = CheckpointSigningKey::read(&public_path).unwrap_err();
        assert!(err.to_string().contains("not an Ed25519 PKCS#8"), "{err}");
        let err = CheckpointPublicKey::parse(path.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("not an Ed25519 SPKI PEM"), "{err}");
        let err = CheckpointPublicKey::parse("/nonexistent/key.pub").unwrap_err();
        assert!(
            err.to_string().contains("cannot read the public key file"),
            "{err}"
        );
    }

    #[test]
    fn the_checkpoints_table_is_the_same_on_both_backends() {
        let sqlite = include_str!("../migrations/sqlite/0002_checkpoints.sql");
        let postgres = include_str!("../migrations/postgres/0002_checkpoints.sql");
        let dialect_free = sqlite
            .replace("INTEGER", "BIGINT")
            .replace(") STRICT;", ");");
        assert_eq!(dialect_free, postgres);
    }

    #[test]
    fn statements_sign_their_canonical_json() {
        let dir = tempfile::tempdir().unwrap();
        let key = CheckpointSigningKey::generate(&dir.path().join("k.pem")).unwrap();
        let statement = statement(&key);
        let text = statement_bytes(&statement).unwrap();
        assert!(text.starts_with("{\"created_at\":"), "{text}");
        assert_eq!(parse_statement(&text).unwrap(), statement);
        let pretty = serde_json::to_string_pretty(&statement).unwrap();
        assert_eq!(parse_statement(&pretty).unwrap(), statement);
        let other_format = text.replace(CHECKPOINT_FORMAT, "other/v9");
        assert!(
            parse_statement(&other_format)
                .unwrap_err()
                .contains("other/v9")
        );
        assert!(parse_statement("{\"format\":1}").is_err());
    }
}
