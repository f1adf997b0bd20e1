//! Browsing the world: the helpers behind `proctor world ls` and `proctor world cat`.

use bytes::Bytes;
use proctor_contract::{SelectorKind, WorldPath};

use crate::{ArtifactStore, ObjectInfo, StoreError};

/// Lists what `selector` names, sorted by path: everything below a prefix selector
/// (`/artifacts/outputs/`), or for an exact path the artifact itself, falling back to
/// everything below it as a directory (`/artifacts/outputs` lists like
/// `/artifacts/outputs/`). An exact path that names nothing is [`StoreError::NotFound`]; an
/// empty prefix is an empty list.
pub async fn ls(
    store: &dyn ArtifactStore,
    selector: &WorldPath,
) -> Result<Vec<ObjectInfo>, StoreError> {
    if selector.kind() == SelectorKind::Prefix {
        return store.list(selector).await;
    }
    match store.head(selector).await {
        Ok(info) => Ok(vec![info]),
        Err(err) if err.is_not_found() => {
            let as_dir = WorldPath::parse(&format!("{selector}/"))?;
            let below = store.list(&as_dir).await?;
            if below.is_empty() {
                Err(err)
            } else {
                Ok(below)
            }
        }
        Err(err) => Err(err),
    }
}

/// Reads the artifact at the exact path `path`.
pub async fn cat(store: &dyn ArtifactStore, path: &WorldPath) -> Result<Bytes, StoreError> {
    store.get(path).await
}
