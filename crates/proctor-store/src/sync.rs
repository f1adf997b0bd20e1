//! Publishing an execution's artifacts from one store to another, typically from the
//! filesystem the container wrote to into a team's S3 bucket.

use proctor_contract::{Receipt, WorldPath};
use serde::Serialize;

use crate::verify::{execution_receipt_path, write_prefix_of};
use crate::{ArtifactStore, ObjectInfo, StoreError};

/// What [`sync_execution`] copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The execution copied.
    pub execution_id: String,
    /// Every artifact copied, in copy order (the execution receipt last).
    pub copied: Vec<ObjectInfo>,
}

/// Copies everything under the execution's write prefix, then its execution receipt, from
/// `from` to `to`, overwriting what `to` holds at those paths.
///
/// Outputs go first, then the outputs index, then the receipt under the write prefix, and
/// `/artifacts/execution/{id}/receipt.json` last, so an interrupted sync never leaves the
/// destination with a receipt that points at missing outputs. The bytes are copied as they
/// are; run [`crate::verify_execution`] on either side to check them.
pub async fn sync_execution(
    from: &dyn ArtifactStore,
    to: &dyn ArtifactStore,
    execution_id: &str,
) -> Result<SyncReport, StoreError> {
    let receipt_path = execution_receipt_path(execution_id)?;
    let receipt_bytes = from.get(&receipt_path).await?;
    let receipt: Receipt =
        serde_json::from_slice(&receipt_bytes).map_err(|e| StoreError::Receipt {
            path: receipt_path.clone(),
            reason: e.to_string(),
        })?;
    let prefix = write_prefix_of(&receipt).map_err(|reason| StoreError::Receipt {
        path: receipt_path.clone(),
        reason,
    })?;

    // Evidence last: plain outputs, then the index, then the prefix receipt.
    let rank = |path: &WorldPath| {
        if *path == prefix.receipt_path() {
            2
        } else if *path == prefix.index_path() {
            1
        } else {
            0
        }
    };
    let mut objects = from.list(prefix.path()).await?;
    objects.sort_by_key(|object| rank(&object.path));

    let mut copied = Vec::with_capacity(objects.len() + 1);
    for object in objects {
        let bytes = from.get(&object.path).await?;
        to.put(&object.path, bytes).await?;
        copied.push(object);
    }
    let size_bytes = receipt_bytes.len() as u64;
    to.put(&receipt_path, receipt_bytes).await?;
    copied.push(ObjectInfo {
        path: receipt_path,
        size_bytes,
    });
    tracing::info!(
        from = %from.location(),
        to = %to.location(),
        execution_id,
        artifacts = copied.len(),
        "store.sync"
    );
    Ok(SyncReport {
        execution_id: execution_id.to_owned(),
        copied,
    })
}
